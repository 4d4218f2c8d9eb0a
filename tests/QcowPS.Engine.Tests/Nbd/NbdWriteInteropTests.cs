using System.IO;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;

namespace QcowPS.Engine.Tests.Nbd
{
    /// <summary>Writable exports, written by qemu-io and nbdcopy over NBD; the image must stay clean and read as the model.</summary>
    public class NbdWriteInteropTests
    {
        [SkippableTheory]
        [InlineData("v3-64k")]
        [InlineData("v2")]
        [InlineData("extl2")]
        [InlineData("chain3")]
        public void QemuIoWritesThroughTheExportLandAsOnAFile(string kind)
        {
            using var dir = new TempDir();
            var image = TestImages.Make(dir, kind);
            // The model: the same image, copied, written by qemu-io directly.
            string model = dir.File("model-" + Path.GetFileName(image.Path));
            File.Copy(image.Path, model);
            if (kind == "chain3") Qemu.Img("rebase", "-u", "-b", "chain-mid.qcow2", "-F", "qcow2", model);
            const long size = 8L << 20;
            var commands = new[]
            {
                "write -P 0x61 0 64k",
                "write -P 0x62 100000 5000",
                "write -z 65536 131072",          // whole clusters
                "write -z 3000 1000",             // inside a cluster
                "write -z -u 1M 256k",            // may unmap
                "write -f -P 0x63 2M 4k",         // FUA
                "discard 4M 1M",
                "write -n -z 5M 64k",             // NO_HOLE: qemu-io -n is no-fallback; still a valid zero write
                $"write -P 0x64 {size - 4096} 4096",
                "flush",
            };
            string format = image.Format;
            using (var server = NbdPeers.Serve(dir, image.Path, writable: true))
            {
                var args = new System.Collections.Generic.List<string> { "-f", "raw" };
                foreach (var c in commands) { args.Add("-c"); args.Add(c); }
                args.Add(server.Uri);
                string output = NbdPeers.WithLog(server, () => NbdPeers.Run("qemu-io", args.ToArray()));
                Assert.DoesNotContain("failed", output);
            }
            Qemu.IoCommands(model, format, System.Array.FindAll(commands, c => !c.StartsWith("write -n")));
            Qemu.IoCommands(model, format, "write -z 5M 64k");
            Qemu.AssertClean(image.Path);
            // discard leaves unspecified content; both qemu (model) and we make it read as zeros without backing data.
            var compare = NbdPeers.TryRun("qemu-img", null, "compare", "-f", format, "-F", format, image.Path, model);
            Assert.True(compare.exitCode == 0, $"{compare.stdout}{compare.stderr}");
        }

        [SkippableFact]
        public void NbdcopyOfARawFileIntoTheExportReadsBackTheSame()
        {
            using var dir = new TempDir();
            string raw = dir.File("source.raw");
            TestImages.WriteMixedRaw(raw, 16L << 20, 42);
            string img = dir.File("target.qcow2");
            Qemu.Img("create", "-f", "qcow2", img, (16L << 20).ToString());
            using (var server = NbdPeers.Serve(dir, img, writable: true))
                NbdPeers.WithLog(server, () => NbdPeers.Run("nbdcopy", raw, server.Uri));
            Qemu.AssertClean(img);
            var compare = NbdPeers.TryRun("qemu-img", null, "compare", "-f", "raw", "-F", "qcow2", raw, img);
            Assert.True(compare.exitCode == 0, $"{compare.stdout}{compare.stderr}");
        }

        [SkippableFact]
        public void ReadOnlyExportRefusesWritesWithEperm()
        {
            using var dir = new TempDir();
            var image = TestImages.Make(dir, "v3-64k");
            byte[] before = File.ReadAllBytes(image.Path);
            using (var server = NbdPeers.Serve(dir, image.Path))
            {
                string output = NbdPeers.Nbdsh(
                    $"h.connect_uri('{server.Uri}')\n" +
                    "print(h.is_read_only())\n" +
                    "h.set_strict_mode(0)\n" +
                    "try:\n    h.pwrite(b'x' * 512, 0)\n    print('written')\n" +
                    "except nbd.Error as e:\n    print('errno', e.errnum)\n");
                Assert.Contains("True", output);
                Assert.Contains("errno 1", output);  // EPERM
            }
            Assert.Equal(before, File.ReadAllBytes(image.Path));
        }
    }
}
