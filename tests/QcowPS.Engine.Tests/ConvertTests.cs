using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using QcowPS.Engine.Operations;
using QcowPS.Engine.Qcow2;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;

namespace QcowPS.Engine.Tests
{
    /// <summary>Every image kind the read tests make converts to qcow2 (plain, zlib, zstd, other cluster size, v2) and raw.</summary>
    public class ConvertTests
    {
        public static IEnumerable<object[]> Targets() => new[]
        {
            new object[] { "qcow2" }, new object[] { "zlib" }, new object[] { "zstd" }, new object[] { "4k" },
            new object[] { "v2" }, new object[] { "raw" },
        };

        public static IEnumerable<object[]> KindsAndTargets()
        {
            foreach (var k in TestImages.Kinds)
                foreach (var t in Targets())
                    yield return new object[] { k, t[0] };
        }

        internal static ConvertOptions OptionsFor(string target) => target switch
        {
            "qcow2" => new ConvertOptions(),
            "zlib" => new ConvertOptions { Compress = true },
            "zstd" => new ConvertOptions { Compress = true, CompressionType = Qcow2CompressionType.Zstd },
            "4k" => new ConvertOptions { ClusterSize = 4096 },
            "v2" => new ConvertOptions { Version = 2 },
            "raw" => new ConvertOptions { DestinationFormat = ImageFormat.Raw },
            _ => throw new ArgumentException(target),
        };

        [SkippableTheory]
        [MemberData(nameof(KindsAndTargets))]
        public void ConvertsAndQemuAgrees(string kind, string target)
        {
            Qemu.Require();
            using var dir = new TempDir();
            var image = TestImages.Make(dir, kind);
            string dest = dir.File("out." + (target == "raw" ? "raw" : "qcow2"));
            var options = OptionsFor(target);
            options.Threads = 2;
            QcowConversionResult result;
            using (var source = DiskImage.Open(image.Path))
                result = ImageConverter.Convert(source, dest, options);
            Assert.Equal(dest, result.Destination);
            Assert.True(File.Exists(dest));
            var (code, stdout, stderr) = Qemu.TryRun("qemu-img", "compare", "-f", image.Format, "-F", target == "raw" ? "raw" : "qcow2", image.Path, dest);
            Assert.True(code == 0, $"qemu-img compare {kind} -> {target}: {stdout}{stderr}");
            if (target != "raw") Qemu.AssertClean(dest);
            ConvertTargetProperties.AssertMatch(image.Path, image.Format, dest, target);
            if (target == "zlib" || target == "zstd")
                Assert.True(result.CompressedClusters > 0 || kind.StartsWith("v3-") || kind == "extl2", $"{kind}: nothing compressed");
            Assert.Empty(Directory.GetFiles(dir.Path, ".*qcowps-*"));
        }

        [SkippableFact]
        public void SnapshotAndBackingFileConversions()
        {
            Qemu.Require();
            using var dir = new TempDir();
            var image = TestImages.Make(dir, "snapshots");
            using (var source = (Qcow2Image)DiskImage.Open(image.Path))
            using (var view = source.OpenSnapshot("first"))
                ImageConverter.Convert(view, dir.File("first.qcow2"), new ConvertOptions());
            string expected = dir.File("first.raw");
            Qemu.Img("convert", "-O", "raw", "-l", "snapshot.name=first", image.Path, expected);
            Assert.Equal(0, Qemu.TryRun("qemu-img", "compare", "-f", "raw", "-F", "qcow2", expected, dir.File("first.qcow2")).exitCode);

            // -BackingFile: the output holds only what differs from the backing image, and reads as the source.
            string baseImg = dir.File("base.qcow2");
            using (var source = DiskImage.Open(image.Path))
                ImageConverter.Convert(source, baseImg, new ConvertOptions());
            using (var img = (Qcow2Image)DiskImage.Open(image.Path, new OpenOptions { Writable = true }))
            {
                img.Write(12345, new byte[] { 1, 2, 3 }, 0, 3);
                img.WriteZeroes(64 * 1024, 64 * 1024);  // zero where the backing file has data
            }
            string delta = dir.File("delta.qcow2");
            QcowConversionResult result;
            using (var source = DiskImage.Open(image.Path))
                result = ImageConverter.Convert(source, delta, new ConvertOptions { BackingFile = "base.qcow2", BackingFormat = "qcow2" });
            Assert.Equal(1, result.DataClusters);
            Assert.True(result.ZeroClusters >= 1);
            Assert.Equal(0, Qemu.TryRun("qemu-img", "compare", image.Path, delta).exitCode);
            Qemu.AssertClean(delta);
            Assert.Equal("base.qcow2", Qemu.Json("info", "--output=json", delta).GetProperty("backing-filename").GetString());
        }

        [SkippableFact]
        public void QemuReadsOurCompressedClustersAndWeCopyThemWithoutRecompressing()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string raw = dir.File("src.raw");
            TestImages.WriteMixedRaw(raw, 6 << 20, 21);
            string first = dir.File("c1.qcow2"), second = dir.File("c2.qcow2");
            using (var source = DiskImage.Open(raw, new OpenOptions { Format = ImageFormat.Raw }))
                ImageConverter.Convert(source, first, new ConvertOptions { Compress = true });
            Assert.Equal(0, Qemu.TryRun("qemu-img", "compare", "-f", "raw", raw, first).exitCode);
            QcowConversionResult again;
            using (var source = DiskImage.Open(first))
                again = ImageConverter.Convert(source, second, new ConvertOptions { Compress = true, CompressionLevel = 1 });
            // Copied streams: the second file holds the first one's compressed streams, byte for byte
            // (found by reading both files' L2 tables in the test, not with the engine). The copy asks
            // for level 1, so a stream compressed again would differ from the level-6 original; the
            // help says streams of the right cluster size and type are copied as they are.
            var before = CompressionClaimsTests.CompressedStreams(first);
            var after = CompressionClaimsTests.CompressedStreams(second);
            Assert.True(before.Length > 10, $"only {before.Length} compressed clusters");
            Assert.Equal(before.Length, after.Length);
            for (int i = 0; i < before.Length - 1; i++)
                Assert.True(before[i].AsSpan().SequenceEqual(after[i]), $"compressed stream {i} was not copied as it was");
            Assert.Equal(0, Qemu.TryRun("qemu-img", "compare", first, second).exitCode);
            Qemu.AssertClean(second);
        }

        [SkippableFact]
        public void CancellationAndAFullDiskLeaveNoDestinationAndAnUnchangedSource()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string raw = dir.File("src.raw");
            TestImages.WriteMixedRaw(raw, 32 << 20, 5);
            string src = dir.File("src.qcow2");
            Qemu.Img("convert", "-O", "qcow2", raw, src);
            var before = File.ReadAllBytes(src);

            using (var cts = new CancellationTokenSource())
            using (var source = DiskImage.Open(src))
            {
                var options = new ConvertOptions
                {
                    Compress = true, Cancellation = cts.Token,
                    Progress = (doneBytes, total) => { if (doneBytes > (4 << 20)) cts.Cancel(); },
                };
                Assert.ThrowsAny<OperationCanceledException>(() => ImageConverter.Convert(source, dir.File("out.qcow2"), options));
            }
            Assert.False(File.Exists(dir.File("out.qcow2")));

            // Early failures hit the metadata the writer thread writes, later ones the data runs the
            // worker threads write (qcow2) or the raw chunks: each must end the conversion the same way.
            foreach (var format in new[] { ImageFormat.Qcow2, ImageFormat.Raw })
            {
                var count = new FaultInjectingFile.Plan { WritesOnly = true };
                using (var source = DiskImage.Open(src))
                    ImageConverter.Convert(source, dir.File("count.out"), new ConvertOptions { DestinationFormat = format, WrapDestination = f => new FaultInjectingFile(f, count) });
                File.Delete(dir.File("count.out"));
                Assert.True(count.Events > 8, $"{format}: only {count.Events} writes");
                foreach (long failAt in new[] { 1, 2, count.Events / 4, count.Events / 2, count.Events })
                    ConvertOntoAFullDisk(format, failAt);
            }
            Assert.True(before.AsSpan().SequenceEqual(File.ReadAllBytes(src)), "the source changed");
            Assert.Equal(new[] { raw, src }.OrderBy(x => x), Directory.GetFiles(dir.Path).OrderBy(x => x));

            void ConvertOntoAFullDisk(ImageFormat format, long failAt)
            {
                var plan = new FaultInjectingFile.Plan { FailAt = failAt, WritesOnly = true };
                using var source = DiskImage.Open(src);
                var e = Assert.Throws<QcowException>(() => ImageConverter.Convert(source, dir.File("full.out"),
                    new ConvertOptions { DestinationFormat = format, WrapDestination = f => new FaultInjectingFile(f, plan) }));
                Assert.Equal(QcowErrorKind.IoError, e.Kind);
                Assert.False(File.Exists(dir.File("full.out")), $"{format}, failure at write {failAt}: the destination exists");
                Assert.Equal(new[] { raw, src }.OrderBy(x => x), Directory.GetFiles(dir.Path).OrderBy(x => x));
            }
        }

        [SkippableFact]
        public void LargeSparseDisksAreConvertedAndComparedWithoutWalkingThemAMegabyteAtATime()
        {
            Qemu.Require();
            using var dir = new TempDir();
            // 4 TiB with 2 MiB of data: 4 million one-megabyte chunks if every range were read.
            string qcow = dir.File("big.qcow2"), raw = dir.File("big.raw");
            Qemu.Img("create", "-q", "-f", "qcow2", qcow, "4T");
            Qemu.IoCommands(qcow, "qcow2", "write -P 5 0 1M", "write -P 6 3T 1M", "write -z 2T 64k");
            using (var f = File.Create(raw)) f.SetLength(1L << 40);  // a sparse raw file: holes found with SEEK_DATA
            using (var f = new FileStream(raw, FileMode.Open)) { f.Position = 700L << 30; f.Write(new byte[] { 1, 2, 3 }); }

            foreach (var (source, format, target) in new[]
            {
                (qcow, ImageFormat.Auto, ImageFormat.Qcow2), (qcow, ImageFormat.Auto, ImageFormat.Raw),
                (raw, ImageFormat.Raw, ImageFormat.Qcow2),
            })
            {
                string dest = dir.File("out-" + target);
                long calls = 0;
                using (var disk = DiskImage.Open(source, new OpenOptions { Format = format }))
                {
                    var r = ImageConverter.Convert(disk, dest, new ConvertOptions
                    {
                        DestinationFormat = target, Overwrite = true, Progress = (done, total) => calls++,
                    });
                    Assert.Equal(disk.Length / 65536, r.DataClusters + r.ZeroClusters);
                    Assert.True(r.DataClusters <= 32, $"{r.DataClusters} data clusters");
                }
                // One progress call per chunk: the empty runs went by in a few large steps.
                Assert.True(calls < 10_000, $"{source} -> {target}: {calls} chunks");
                Assert.Equal(0, Qemu.TryRun("qemu-img", "compare", "-f", format == ImageFormat.Raw ? "raw" : "qcow2",
                    "-F", target == ImageFormat.Raw ? "raw" : "qcow2", source, dest).exitCode);
                if (target == ImageFormat.Qcow2) Qemu.AssertClean(dest);
                // Comparing them takes the same large steps.
                long compareCalls = 0;
                using (var a = DiskImage.Open(source, new OpenOptions { Format = format }))
                using (var b = DiskImage.Open(dest, new OpenOptions { Format = target == ImageFormat.Raw ? ImageFormat.Raw : ImageFormat.Auto }))
                    Assert.Empty(ImageComparer.Compare(a, b, all: true, strict: false, progress: (done, total) => compareCalls++).ToList());
                Assert.True(compareCalls < 10_000, $"compare {source} and {dest}: {compareCalls} steps");
                File.Delete(dest);
            }
        }

        [SkippableFact]
        public void ALargeSparseDiskOverABackingFileKeepsOnlyWhatDiffersWithoutWalkingIt()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string golden = dir.File("golden.qcow2"), vm = dir.File("vm.qcow2"), diff = dir.File("diff.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", golden, "1T");
            Qemu.IoCommands(golden, "qcow2", "write -P 1 0 1M", "write -P 2 300G 1M");
            // The VM's disk: the golden data at 0, the range at 300G zeroed, new data at 700G.
            Qemu.Img("convert", "-O", "qcow2", golden, vm);
            Qemu.IoCommands(vm, "qcow2", "write -z 300G 1M", "write -P 3 700G 1M");
            long steps = 0;
            using (var disk = DiskImage.Open(vm))
            {
                var r = ImageConverter.Convert(disk, diff, new ConvertOptions { BackingFile = "golden.qcow2", BackingFormat = "qcow2", Progress = (d, t) => steps++ });
                Assert.Equal(16, r.DataClusters);     // only the new megabyte at 700G
            }
            Assert.True(steps < 10_000, $"{steps} steps");
            Assert.Equal(0, Qemu.TryRun("qemu-img", "compare", vm, diff).exitCode);
            Qemu.AssertClean(diff);
        }

        [SkippableFact]
        public void AnExabyteDiskConvertsAndComparesInAFewSteps()
        {
            Qemu.Require();
            using var dir = new TempDir();
            // The largest disk QEMU makes (1 EiB, 2 MiB clusters), with data at both ends of a 500 PiB gap.
            // (qemu-img convert takes minutes on it: it asks for every 512 GiB L2 range in turn.)
            string src = dir.File("eib.qcow2"), dest = dir.File("eib-copy.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", "-o", "cluster_size=2M", src, "1E");
            Qemu.IoCommands(src, "qcow2", "write -P 7 0 2M", "write -P 8 500P 2M");
            long steps = 0;
            using (var disk = DiskImage.Open(src))
            {
                var r = ImageConverter.Convert(disk, dest, new ConvertOptions { ClusterSize = 2 << 20, Progress = (d, t) => steps++ });
                Assert.Equal(2, r.DataClusters);
                Assert.Equal((1L << 60) / (2 << 20) - 2, r.ZeroClusters);
            }
            Assert.True(steps < 10_000, $"{steps} steps");
            Qemu.AssertClean(dest);
            Assert.Contains("read 2097152/2097152 bytes", Qemu.IoCommands(dest, "qcow2", "read -P 8 500P 2M"));
            Assert.Contains("read 2097152/2097152 bytes", Qemu.IoCommands(dest, "qcow2", "read -P 7 0 2M"));
            long compareSteps = 0;
            using (var a = DiskImage.Open(src))
            using (var b = DiskImage.Open(dest))
                Assert.Empty(ImageComparer.Compare(a, b, all: true, strict: true, progress: (d, t) => compareSteps++).ToList());
            Assert.True(compareSteps < 10_000, $"{compareSteps} compare steps");
        }

        [SkippableFact]
        public void StrictComparisonTellsApartHowRangesAreStoredAsQemuImgCompareDoes()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string a = dir.File("a.qcow2"), b = dir.File("b.qcow2"), compressed = dir.File("c.qcow2"), raw = dir.File("a.raw");
            Qemu.Img("create", "-q", "-f", "qcow2", a, "4M");
            Qemu.IoCommands(a, "qcow2", "write -P 1 0 64k", "write -z 1M 64k");      // data, then a zero-flag cluster
            Qemu.Img("create", "-q", "-f", "qcow2", b, "4M");
            Qemu.IoCommands(b, "qcow2", "write -P 1 0 64k");                         // the same data, nothing at 1M
            Qemu.Img("convert", "-c", "-O", "qcow2", b, compressed);
            Qemu.Img("convert", "-O", "raw", b, raw);

            QcowDifference[] Compare(string x, string y, bool strict, bool all = true)
            {
                using var dx = DiskImage.Open(x, new OpenOptions { Format = x.EndsWith(".raw") ? ImageFormat.Raw : ImageFormat.Auto });
                using var dy = DiskImage.Open(y, new OpenOptions { Format = y.EndsWith(".raw") ? ImageFormat.Raw : ImageFormat.Auto });
                return ImageComparer.Compare(dx, dy, all, strict).ToArray();
            }
            string Describe(QcowDifference[] ds) => string.Join(" ", ds.Select(d => $"{d.Reason}@{d.Offset}+{d.Length}"));

            // Same guest data everywhere: plain compare finds nothing.
            foreach (var (x, y) in new[] { (a, b), (b, compressed), (b, raw) })
                Assert.Empty(Compare(x, y, strict: false));
            // A zero flag against unallocated; compressed against data; unallocated against a raw hole.
            Assert.Equal("AllocationMismatch@1048576+65536", Describe(Compare(a, b, strict: true)));
            Assert.Equal("AllocationMismatch@0+65536", Describe(Compare(b, compressed, strict: true)));
            Assert.Equal("AllocationMismatch@65536+4128768", Describe(Compare(b, raw, strict: true)));
            Assert.Single(Compare(b, raw, strict: true, all: false));
            Assert.Empty(Compare(b, b, strict: true));
            // The first difference is the first by offset, whichever kind it is; -All gives both.
            string d = dir.File("d.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", d, "4M");
            Qemu.IoCommands(d, "qcow2", "write -P 1 0 64k", "write -P 2 4096 512");  // content differs at 4096, no zero flag at 1M
            Assert.Equal("Content@4096+1", Describe(Compare(a, d, strict: true, all: false)));
            Assert.Equal("AllocationMismatch@1048576+65536", Describe(Compare(b, a, strict: true, all: false)));
            Assert.Equal("Content@4096+512 AllocationMismatch@1048576+65536", Describe(Compare(a, d, strict: true)));
            Assert.Equal("Content@4096+512", Describe(Compare(a, d, strict: false)));
            // qemu-img compare -s gives the same verdicts.
            Assert.Equal(1, Qemu.TryRun("qemu-img", "compare", "-s", a, b).exitCode);
            Assert.Equal(1, Qemu.TryRun("qemu-img", "compare", "-s", b, compressed).exitCode);
            Assert.Equal(1, Qemu.TryRun("qemu-img", "compare", "-s", "-F", "raw", b, raw).exitCode);
            Assert.Equal(0, Qemu.TryRun("qemu-img", "compare", "-s", b, b).exitCode);
        }

        [SkippableFact]
        public void ExistingDestinationNeedsOverwrite()
        {
            Qemu.Require();
            using var dir = new TempDir();
            var image = TestImages.Make(dir, "v3-64k");
            File.WriteAllText(dir.File("out.qcow2"), "keep");
            using var source = DiskImage.Open(image.Path);
            var e = Assert.Throws<QcowException>(() => ImageConverter.Convert(source, dir.File("out.qcow2"), new ConvertOptions()));
            Assert.Equal(QcowErrorKind.AlreadyExists, e.Kind);
            Assert.Equal("keep", File.ReadAllText(dir.File("out.qcow2")));
            ImageConverter.Convert(source, dir.File("out.qcow2"), new ConvertOptions { Overwrite = true });
            Assert.Equal(0, Qemu.TryRun("qemu-img", "compare", image.Path, dir.File("out.qcow2")).exitCode);
        }
    }
}
