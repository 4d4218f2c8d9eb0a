using QcowPS.Engine.Tests.Infrastructure;
using Xunit;

namespace QcowPS.Engine.Tests.Nbd
{
    /// <summary>The qemu:dirty-bitmap:NAME context from persistent bitmaps, against qemu-nbd -B NAME.</summary>
    public class NbdDirtyBitmapTests
    {
        [SkippableFact]
        public void DirtyBitmapContextMapsAsQemuNbd()
        {
            NbdPeers.Require("nbdinfo", "qemu-nbd");
            using var dir = new TempDir();
            string image = dir.File("bitmaps.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", image, "16M");
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x11 0 2M", image);
            Qemu.Img("bitmap", "--add", image, "b1");
            // Written after the bitmap was added: these runs are dirty (qemu-io keeps persistent bitmaps).
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x22 1M 64k", "-c", "write -P 0x23 5M 3k", "-c", "write -z 9M 1M", image);
            Qemu.Img("bitmap", "--add", image, "empty");

            using var qemu = new NbdPeers.QemuNbd(dir, image, "qcow2", bitmap: "b1");
            string theirs = NbdPeers.Run("nbdinfo", "--map=qemu:dirty-bitmap:b1", qemu.Uri);
            using var server = NbdPeers.Serve(dir, image);
            string uri = NbdPeers.UnixUri(dir.File("ours.sock"));
            string ours = NbdPeers.WithLog(server, () => NbdPeers.Run("nbdinfo", "--map=qemu:dirty-bitmap:b1", uri));
            Assert.Contains("dirty", theirs);
            Assert.Equal(theirs, ours);
            Assert.DoesNotContain("dirty", NbdPeers.Run("nbdinfo", "--map=qemu:dirty-bitmap:empty", uri).Replace("clean", ""));

            // Listed among the contexts, and a name no bitmap has is not.
            string contexts = NbdPeers.Run("nbdinfo", "--list", "--json", uri);
            Assert.Contains("qemu:dirty-bitmap:b1", contexts);
            Assert.Contains("qemu:dirty-bitmap:empty", contexts);
            var (code, _, _) = NbdPeers.TryRun("nbdinfo", null, "--map=qemu:dirty-bitmap:nope", uri);
            Assert.NotEqual(0, code);
        }
    }
}
