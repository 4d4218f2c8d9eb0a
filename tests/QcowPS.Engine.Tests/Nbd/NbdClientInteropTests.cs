using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.Json;
using QcowPS.Engine.Nbd;
using QcowPS.Engine.Operations;
using QcowPS.Engine.Qcow2;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;

namespace QcowPS.Engine.Tests.Nbd
{
    /// <summary>NbdDisk, the client, against real servers: qemu-nbd and nbdkit, with qemu-img as the oracle.</summary>
    public class NbdClientInteropTests
    {
        /// <summary>Runs of (data, zero) as qemu-img map reports them, adjacent equal runs merged.</summary>
        private static List<(long start, long length, bool data, bool zero)> Merge(IEnumerable<(long start, long length, bool data, bool zero)> runs)
        {
            var merged = new List<(long start, long length, bool data, bool zero)>();
            foreach (var r in runs)
            {
                if (r.length == 0) continue;
                if (merged.Count > 0)
                {
                    var last = merged[^1];
                    if (last.data == r.data && last.zero == r.zero && last.start + last.length == r.start)
                    {
                        merged[^1] = (last.start, last.length + r.length, last.data, last.zero);
                        continue;
                    }
                }
                merged.Add(r);
            }
            return merged;
        }

        private static List<(long, long, bool, bool)> QemuMap(string image, string format) =>
            Merge(Qemu.Json("map", "--output=json", "-f", format, image).EnumerateArray().Select(e =>
                (e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64(), e.GetProperty("data").GetBoolean(), e.GetProperty("zero").GetBoolean())));

        /// <summary>Our extents in qemu-img map's terms: stored data is data; the rest reads as zeros.</summary>
        private static List<(long, long, bool, bool)> OurMap(VirtualDisk disk) =>
            Merge(ImageInspector.Extents(disk, 0, disk.Length).Select(c =>
                (c.VirtualOffset, c.Length,
                 c.ClusterType == ClusterType.Normal || c.ClusterType == ClusterType.Compressed || c.ClusterType == ClusterType.ZeroAllocated,
                 c.ClusterType != ClusterType.Normal && c.ClusterType != ClusterType.Compressed)));

        private static void AssertSameData(string a, string formatA, string b, string formatB)
        {
            var (code, stdout, stderr) = Qemu.TryRun("qemu-img", "compare", "-f", formatA, "-F", formatB, a, b);
            Assert.True(code == 0, $"qemu-img compare {a} {b}: {stdout}{stderr}");
        }

        [SkippableTheory]
        [MemberData(nameof(TestImages.KindData), MemberType = typeof(TestImages))]
        public void EveryImageKindReadsMapsAndConvertsThroughQemuNbdAsQemuImgSeesTheFile(string kind)
        {
            NbdPeers.Require("qemu-nbd");
            using var dir = new TempDir();
            var image = TestImages.Make(dir, kind);
            using var server = PeerServer.QemuNbd(dir, image.Path, image.Format, writable: false);
            using var disk = (NbdDisk)DiskImage.Open(server.Uri);

            Assert.Equal(ImageFormat.Nbd, disk.Format);
            Assert.True(disk.Client.ReadOnly);
            Assert.Equal(Qemu.Json("info", "--output=json", "-f", image.Format, image.Path).GetProperty("virtual-size").GetInt64(), disk.Length);

            // Read -OutFile's engine: the whole disk equals qemu-img convert of the file.
            string expected = dir.File("expected.raw"), ours = dir.File("ours.raw");
            Qemu.Img("convert", "-f", image.Format, "-O", "raw", image.Path, expected);
            RawExporter.Export(disk, 0, disk.Length, ours, false);
            AssertSameData(expected, "raw", ours, "raw");

            // Extents from BLOCK_STATUS: qemu-img map of the file, as data / zero runs.
            var map = QemuMap(image.Path, image.Format);
            Assert.Equal(map, OurMap(disk));

            // Convert reads only what block status calls data.
            long dataBytes = map.Where(r => r.Item3 && !r.Item4).Sum(r => r.Item2);
            foreach (bool compress in new[] { false, true })
            {
                string destination = dir.File($"converted-{compress}.qcow2");
                long before = disk.Client.BytesReceived;
                ImageConverter.Convert(disk, destination, new ConvertOptions { Compress = compress, Threads = 2 });
                long read = disk.Client.BytesReceived - before;
                Assert.True(read <= dataBytes, $"convert read {read} bytes from the server; the export holds {dataBytes} bytes of data");
                AssertSameData(destination, "qcow2", image.Path, image.Format);
                Qemu.AssertClean(destination);
            }
        }

        [SkippableFact]
        public void AnInternalSnapshotServedWithDashLReadsAsQemuImgConvertOfIt()
        {
            NbdPeers.Require("qemu-nbd");
            using var dir = new TempDir();
            var image = TestImages.Make(dir, "snapshots");
            foreach (var snapshot in image.Snapshots)
            {
                string expected = dir.File(snapshot + ".raw"), ours = dir.File(snapshot + "-nbd.raw");
                Qemu.Img("convert", "-l", snapshot, "-O", "raw", image.Path, expected);
                using var server = PeerServer.QemuNbd(dir, image.Path, "qcow2", false, "-l", snapshot);
                using var disk = DiskImage.Open(server.Uri);
                RawExporter.Export(disk, 0, disk.Length, ours, false);
                AssertSameData(expected, "raw", ours, "raw");
            }
        }

        /// <summary>Seeded writes, zeroes and discards at unaligned offsets, mirrored in a byte array (discarded bytes are re-written so the model stays exact).</summary>
        private static byte[] RunWorkload(VirtualDisk disk, int seed, int operations)
        {
            var random = new Random(seed);
            var model = new byte[disk.Length];
            disk.Read(0, model, 0, model.Length);
            for (int i = 0; i < operations; i++)
            {
                long offset = random.NextInt64(0, disk.Length - 1);
                int length = (int)Math.Min(disk.Length - offset, random.Next(1, 3 << 20));
                switch (random.Next(3))
                {
                    case 0:
                    case 1:
                        var data = new byte[length];
                        random.NextBytes(data);
                        disk.Write(offset, data, 0, length);
                        Array.Copy(data, 0, model, offset, length);
                        break;
                    default:
                        disk.WriteZeroes(offset, length);
                        Array.Clear(model, (int)offset, length);
                        break;
                }
            }
            disk.Flush();
            return model;
        }

        private static void AssertReads(VirtualDisk disk, byte[] model)
        {
            var actual = new byte[disk.Length];
            disk.Read(0, actual, 0, actual.Length);
            for (int i = 0; i < model.Length; i++)
                if (actual[i] != model[i]) Assert.Fail($"byte {i} of '{disk.Path}' reads 0x{actual[i]:X2}, the model says 0x{model[i]:X2}");
        }

        [SkippableFact]
        public void SeededWritesThroughWritableQemuNbdLandInTheImageAsTheModelSays()
        {
            NbdPeers.Require("qemu-nbd");
            using var dir = new TempDir();
            string image = dir.File("disk.qcow2");
            Qemu.Img("create", "-f", "qcow2", image, "24M");
            byte[] model;
            using (var server = PeerServer.QemuNbd(dir, image, "qcow2", writable: true))
            {
                using var disk = DiskImage.Open(server.Uri, new OpenOptions { Writable = true });
                model = RunWorkload(disk, 11, 40);
                AssertReads(disk, model);
            }
            string expected = dir.File("model.raw");
            File.WriteAllBytes(expected, model);
            AssertSameData(image, "qcow2", expected, "raw");
            Qemu.AssertClean(image);
        }

        [SkippableFact]
        public void ConvertIntoAnNbdkitMemoryExportWritesTheSourceAsQemuImgCompareSees()
        {
            using var dir = new TempDir();
            var image = TestImages.Make(dir, "v3-64k");
            long size = Qemu.Json("info", "--output=json", image.Path).GetProperty("virtual-size").GetInt64();
            // The export's size is the image's: qemu-img compare wants any extra tail to read as zeros, and CopyInto leaves a tail alone.
            using var server = PeerServer.Nbdkit(dir, "memory", size.ToString());
            using (var source = DiskImage.Open(image.Path))
            using (var destination = DiskImage.Open(server.Uri, new OpenOptions { Writable = true }))
            {
                // Garbage first, so that zeroing where the source reads zeros is needed and is checked.
                var junk = new byte[destination.Length];
                new Random(5).NextBytes(junk);
                destination.Write(0, junk, 0, junk.Length);
                var result = DiskCopier.CopyInto(source, destination, new ConvertOptions());
                Assert.Equal(ImageFormat.Nbd, result.DestinationFormat);
            }
            var (code, stdout, stderr) = NbdPeers.TryRun("qemu-img", null, "compare", "-f", image.Format, "-F", "raw", image.Path, server.Uri);
            Assert.True(code == 0, $"qemu-img compare: {stdout}{stderr}");
        }

        public static IEnumerable<object[]> NbdkitVariants() => new[]
        {
            new object[] { "plain", new string[0] },
            new object[] { "no-sr", new[] { "--no-sr" } },
            new object[] { "noextents", new[] { "--filter=noextents" } },
            new object[] { "nozero", new[] { "--filter=nozero" } },
            new object[] { "blocksize-policy", new[] { "--filter=blocksize-policy", "blocksize-minimum=512", "blocksize-maximum=65536", "blocksize-error-policy=error" } },
        };

        [SkippableTheory]
        [MemberData(nameof(NbdkitVariants))]
        public void SeededWritesToNbdkitMemoryMatchTheModelWhateverTheServerLacks(string variant, string[] options)
        {
            using var dir = new TempDir();
            // An odd size: not a multiple of 512, so the last block is short (with a minimum block size the
            // export is whole blocks: nbdkit refuses a short last block then, as the spec lets it).
            long size = variant == "blocksize-policy" ? 20000256 : 20000001;
            using var server = PeerServer.Nbdkit(dir, options.Where(o => o.StartsWith("-")).Concat(new[] { "memory", size.ToString() }).Concat(options.Where(o => !o.StartsWith("-"))).ToArray());
            using var disk = (NbdDisk)DiskImage.Open(server.Uri, new OpenOptions { Writable = true });
            var client = disk.Client;
            switch (variant)
            {
                case "no-sr":
                    Assert.False(client.StructuredReplies);
                    Assert.Empty(client.Contexts);
                    break;
                case "noextents":
                    // nbdkit still offers base:allocation, and calls the whole export data.
                    disk.Write(1 << 20, new byte[] { 1 }, 0, 1);
                    var whole = disk.GetExtent(0, disk.Length);
                    Assert.Equal(ClusterType.Normal, whole.Type);
                    Assert.Equal(disk.Length, whole.Length);
                    break;
                case "nozero":
                    Assert.False(client.CanWriteZeroes);
                    break;
                case "blocksize-policy":
                    Assert.Equal(512u, client.MinimumBlockSize);
                    Assert.Equal(65536u, client.MaximumBlockSize);
                    break;
                default:
                    Assert.True(client.StructuredReplies);
                    Assert.True(client.HasContext(NbdProtocol.ContextBaseAllocation));
                    break;
            }
            Assert.Equal(size, disk.Length);
            var model = RunWorkload(disk, 7, 30);
            AssertReads(disk, model);
            // An unaligned read at the very end.
            var tail = new byte[3];
            disk.Read(disk.Length - 3, tail, 0, 3);
            Assert.Equal(model.Skip(model.Length - 3), tail);
            // And a conversion out of it reads back the same.
            string copy = dir.File("copy.qcow2");
            ImageConverter.Convert(disk, copy, new ConvertOptions { Threads = 2 });
            using var converted = DiskImage.Open(copy);
            var back = new byte[disk.Length];
            converted.Read(0, back, 0, back.Length);
            Assert.True(model.AsSpan().SequenceEqual(back), "the converted image differs from the model");
        }

        [SkippableFact]
        public void AnEioFromTheServerFailsTheConversionNamingEioAndLeavesNoDestination()
        {
            using var dir = new TempDir();
            using var server = PeerServer.Nbdkit(dir, "--filter=error", "memory", "8M", "error-pread=EIO", "error-pread-rate=100%");
            using var disk = DiskImage.Open(server.Uri, new OpenOptions { Writable = true });
            disk.Write(4 << 20, new byte[] { 1, 2, 3 }, 0, 3);
            string destination = dir.File("out.qcow2");
            var e = Assert.Throws<NbdException>(() => ImageConverter.Convert(disk, destination, new ConvertOptions { Threads = 2 }));
            Assert.Equal(NbdFailure.ServerError, e.Failure);
            Assert.Equal("EIO", e.NbdErrorName);
            Assert.Equal("QcowPS.NbdServerError", e.ErrorId);
            Assert.Contains(server.Uri, e.Message);
            Assert.Contains("EIO", e.Message);
            Assert.False(File.Exists(destination));
            Assert.Empty(Directory.GetFiles(dir.Path, "out.qcow2*"));
        }

        [SkippableFact]
        public void AServerThatStallsHitsTheTimeoutTheUriSets()
        {
            using var dir = new TempDir();
            using var server = PeerServer.Nbdkit(dir, "--filter=delay", "memory", "8M", "rdelay=20");
            using var disk = DiskImage.Open(server.Uri + "&x-timeout=1");
            var watch = Stopwatch.StartNew();
            var e = Assert.Throws<NbdException>(() => disk.Read(0, new byte[4096], 0, 4096));
            Assert.Equal(NbdFailure.Timeout, e.Failure);
            Assert.Equal("QcowPS.NbdTimeout", e.ErrorId);
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"the timeout of 1 s took {watch.Elapsed}");
            // The connection is given up: later requests fail at once with the same cause.
            var again = Assert.Throws<NbdException>(() => disk.Read(0, new byte[512], 0, 512));
            Assert.Equal(NbdFailure.Timeout, again.Failure);
        }

        [SkippableFact]
        public void AnUnknownExportIsRefusedNamingIt()
        {
            using var dir = new TempDir();
            string image = dir.File("one.raw");
            File.WriteAllBytes(image, new byte[65536]);
            using var server = PeerServer.QemuNbd(dir, image, "raw", false, "-x", "one");
            using (var one = DiskImage.Open(server.Uri.Replace("nbd+unix:///", "nbd+unix:///one"))) Assert.Equal(65536, one.Length);
            var e = Assert.Throws<NbdException>(() => DiskImage.Open(server.Uri.Replace("nbd+unix:///", "nbd+unix:///nosuch")));
            Assert.Equal(NbdFailure.Refused, e.Failure);
            Assert.Contains("nosuch", e.Message);
        }

        [SkippableFact]
        public void WritingToAReadOnlyExportIsRefusedBeforeAnythingIsSent()
        {
            using var dir = new TempDir();
            using var server = PeerServer.Nbdkit(dir, "-r", "memory", "1M");
            var e = Assert.Throws<QcowException>(() => DiskImage.Open(server.Uri, new OpenOptions { Writable = true }));
            Assert.Equal(QcowErrorKind.ReadOnly, e.Kind);
            Assert.Contains("read-only", e.Message);
        }
    }
}
