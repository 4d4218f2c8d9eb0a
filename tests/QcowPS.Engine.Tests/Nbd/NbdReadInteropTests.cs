using System.Text.Json;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;

namespace QcowPS.Engine.Tests.Nbd
{
    /// <summary>Every image kind the read tests make, served read-only and read by real NBD clients.</summary>
    public class NbdReadInteropTests
    {
        [SkippableTheory]
        [MemberData(nameof(TestImages.KindData), MemberType = typeof(TestImages))]
        public void ServedImageReadsAsTheFileAndMapsAsQemuNbd(string kind)
        {
            using var dir = new TempDir();
            var image = TestImages.Make(dir, kind);
            using var server = NbdPeers.Serve(dir, image.Path);
            string uri = server.Uri;

            // Data: qemu-img reading our export sees what it sees in the file.
            var compare = NbdPeers.TryRun("qemu-img", null, "compare", "-f", "raw", "-F", image.Format, uri, image.Path);
            Assert.True(compare.exitCode == 0, $"qemu-img compare {uri} {image.Path}: {compare.stdout}{compare.stderr}");

            // Maps: base:allocation and qemu:allocation-depth as qemu-nbd serves the same image.
            using var qemu = new NbdPeers.QemuNbd(dir, image.Path, image.Format);
            foreach (var context in new[] { "base:allocation", "qemu:allocation-depth" })
            {
                string ours = NbdPeers.Run("nbdinfo", "--map=" + context, uri);
                string theirs = NbdPeers.Run("nbdinfo", "--map=" + context, qemu.Uri);
                Assert.Equal(theirs, ours);
            }
            Assert.Equal(NbdPeers.Run("qemu-img", "map", "--output=json", "-f", "raw", qemu.Uri).Replace("qemu.sock", "ours.sock"),
                         NbdPeers.Run("qemu-img", "map", "--output=json", "-f", "raw", uri));
        }

        [SkippableFact]
        public void SnapshotExportReadsAsQemuImgConvertOfTheSnapshot()
        {
            using var dir = new TempDir();
            var image = TestImages.Make(dir, "snapshots");
            foreach (var snapshot in image.Snapshots)
            {
                string expected = dir.File(snapshot + ".raw");
                Qemu.Img("convert", "-l", snapshot, "-O", "raw", image.Path, expected);
                using var server = NbdPeers.Serve(dir, image.Path, snapshot: snapshot);
                var compare = NbdPeers.TryRun("qemu-img", null, "compare", "-f", "raw", "-F", "raw", server.Uri, expected);
                Assert.True(compare.exitCode == 0, $"snapshot {snapshot}: {compare.stdout}{compare.stderr}");
            }
        }

        [SkippableFact]
        public void NbdinfoDescribesTheExportAsQemuNbdDoes()
        {
            using var dir = new TempDir();
            var image = TestImages.Make(dir, "v3-64k");
            using var server = NbdPeers.Serve(dir, image.Path);
            using var qemu = new NbdPeers.QemuNbd(dir, image.Path, image.Format);
            var ours = JsonDocument.Parse(NbdPeers.WithLog(server, () => NbdPeers.Run("nbdinfo", "--json", server.Uri))).RootElement;
            var theirs = JsonDocument.Parse(NbdPeers.Run("nbdinfo", "--json", qemu.Uri)).RootElement;
            var a = ours.GetProperty("exports")[0];
            var b = theirs.GetProperty("exports")[0];
            foreach (var field in new[] { "export-size", "is_rotational", "is_read_only", "can_cache", "can_df", "can_fast_zero",
                                          "can_flush", "can_fua", "can_multi_conn", "can_trim", "can_zero",
                                          "block_size_minimum", "block_size_preferred", "block_size_maximum" })
                Assert.True(b.GetProperty(field).ToString() == a.GetProperty(field).ToString(), $"{field}: ours {a.GetProperty(field)}, qemu-nbd {b.GetProperty(field)}");
            Assert.Equal(b.GetProperty("contexts").ToString(), a.GetProperty("contexts").ToString());
        }
    }
}
