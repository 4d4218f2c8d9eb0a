using System;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Text;
using QcowPS.Engine.Compression;
using QcowPS.Engine.Operations;
using QcowPS.Engine.Qcow2;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace QcowPS.Engine.Tests
{
    /// <summary>
    /// Tests that read process-wide codec state (the call counters, the managed-zstd switch) run in
    /// this collection, one at a time and never beside another test class.
    /// </summary>
    [CollectionDefinition(Name, DisableParallelization = true)]
    public sealed class CodecStateCollection
    {
        public const string Name = "Codec state (not parallel)";
    }

    /// <summary>
    /// The README's compression claims, each against an oracle: compressed clusters copied without
    /// recompressing (codec call counts), -CompressionLevel reaching the codec, zstd output the size
    /// of qemu-img's, and all of it again through the managed zstd port that hosts without libzstd use.
    /// </summary>
    [Collection(CodecStateCollection.Name)]
    public class CompressionClaimsTests
    {
        private const int ClusterSize = 65536;
        private readonly ITestOutputHelper _output;

        public CompressionClaimsTests(ITestOutputHelper output) { _output = output; }

        /// <summary>Text of pseudo-random words: compressible, and differently so at different levels.</summary>
        private static void WriteWordsRaw(string path, int clusters, int seed)
        {
            string[] words = { "qcow2", "cluster", "refcount", "table", "snapshot", "backing", "zstd", "deflate", "guest",
                               "host", "offset", "sector", "bitmap", "extent", "header", "journal", "inode", "block" };
            var random = new Random(seed);
            var text = new StringBuilder();
            using var f = new FileStream(path, FileMode.Create, FileAccess.Write);
            var cluster = new byte[ClusterSize];
            for (int c = 0; c < clusters; c++)
            {
                text.Clear();
                while (text.Length < ClusterSize)
                    text.Append(words[random.Next(words.Length)]).Append(random.Next(1000)).Append(' ');
                Encoding.ASCII.GetBytes(text.ToString(0, ClusterSize), 0, ClusterSize, cluster, 0);
                if (c % 4 == 3) random.NextBytes(cluster.AsSpan(0, ClusterSize / 2));  // some half-random clusters
                f.Write(cluster, 0, cluster.Length);
            }
        }

        private static string Sha(string path)
        {
            using var sha = SHA256.Create();
            using var f = File.OpenRead(path);
            return System.Convert.ToHexString(sha.ComputeHash(f));
        }

        private static QcowConversionResult Convert(string source, string destination, ConvertOptions options, string format = null)
        {
            options.Threads = 2;
            using var image = DiskImage.Open(source, format == "raw" ? new OpenOptions { Format = ImageFormat.Raw } : new OpenOptions());
            return ImageConverter.Convert(image, destination, options);
        }

        /// <summary>Runs body with the managed zstd port forced on or off, and restores the switch.</summary>
        private static void WithZstd(bool managed, Action body)
        {
            bool before = ZstdCodec.ForceManaged;
            ZstdCodec.ForceManaged = managed;
            try
            {
                using (var probe = new ZstdCodec())
                    Assert.True(probe.UsesNativeLibrary != managed || !NativeZstd.Available,
                        $"the zstd switch did not take: managed={managed}, native={probe.UsesNativeLibrary}");
                body();
            }
            finally { ZstdCodec.ForceManaged = before; }
        }

        [SkippableTheory]
        [InlineData("zlib", false)]
        [InlineData("zstd", false)]
        [InlineData("zstd", true)]
        public void CompressedClustersAreCopiedWithoutRecompressing(string type, bool managedZstd)
        {
            Qemu.Require();
            WithZstd(managedZstd, () =>
            {
                using var dir = new TempDir();
                string raw = dir.File("src.raw"), source = dir.File("qemu-c.qcow2"), copy = dir.File("copy.qcow2");
                WriteWordsRaw(raw, 48, 7);
                // The source is QEMU's own compressed image, counted by QEMU: the expectations are not ours.
                Qemu.Img("convert", "-c", "-O", "qcow2", "-o", "compression_type=" + type, "-f", "raw", raw, source);
                var check = Qemu.Check(source).report;
                long allocated = check.GetProperty("allocated-clusters").GetInt64();
                long compressed = check.GetProperty("compressed-clusters").GetInt64();
                Assert.True(compressed >= 24, $"QEMU compressed only {compressed} of {allocated} clusters");

                long compressBefore = ClusterCodec.CompressCalls;
                var result = Convert(source, copy, new ConvertOptions
                {
                    Compress = true,
                    CompressionType = type == "zstd" ? Qcow2CompressionType.Zstd : Qcow2CompressionType.Zlib,
                });
                long compressCalls = ClusterCodec.CompressCalls - compressBefore;

                // Only the clusters QEMU left uncompressed are offered to the compressor again.
                Assert.Equal(allocated - compressed, compressCalls);
                Assert.Equal(compressed, result.CompressedClusters);
                Assert.Equal(compressed, Qemu.Check(copy).report.GetProperty("compressed-clusters").GetInt64());
                Assert.Equal(0, Qemu.TryRun("qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, copy).exitCode);
                Qemu.AssertClean(copy);
            });
        }

        [SkippableTheory]
        [InlineData("zlib", 1, 9, 6, false)]
        [InlineData("zstd", 1, 19, 3, false)]
        [InlineData("zstd", 1, 19, 3, true)]
        public void CompressionLevelReachesTheCodec(string type, int fast, int small, int qemuDefault, bool managedZstd)
        {
            Qemu.Require();
            WithZstd(managedZstd, () =>
            {
                using var dir = new TempDir();
                string raw = dir.File("src.raw");
                WriteWordsRaw(raw, 32, 11);
                var kind = type == "zstd" ? Qcow2CompressionType.Zstd : Qcow2CompressionType.Zlib;
                string Out(int level)
                {
                    string path = dir.File($"level{level}.qcow2");
                    Convert(raw, path, new ConvertOptions { Compress = true, CompressionType = kind, CompressionLevel = level }, "raw");
                    Assert.Equal(0, Qemu.TryRun("qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, path).exitCode);
                    Qemu.AssertClean(path);
                    return path;
                }
                string fastPath = Out(fast), smallPath = Out(small), defaultPath = Out(0), explicitPath = Out(qemuDefault);
                long fastSize = new FileInfo(fastPath).Length, smallSize = new FileInfo(smallPath).Length;
                _output.WriteLine($"{type} managed={managedZstd}: level {fast} {fastSize} bytes, level {small} {smallSize} bytes, default {new FileInfo(defaultPath).Length}");
                // A level that never reached the codec would give the same file at every level.
                Assert.True(smallSize < fastSize, $"{type} level {small} ({smallSize} B) is not smaller than level {fast} ({fastSize} B)");
                // Level 0 means QEMU's default level, no other.
                Assert.Equal(Sha(explicitPath), Sha(defaultPath));
                Assert.NotEqual(Sha(fastPath), Sha(defaultPath));
            });
        }

        /// <summary>
        /// The compressed streams of a qcow2 file, in guest order, found by reading its L1 and L2 tables
        /// here (not with the engine under test): each runs from its offset to the next stream or the end.
        /// </summary>
        internal static byte[][] CompressedStreams(string path)
        {
            var file = File.ReadAllBytes(path);
            ulong Be64(long at) => System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(file.AsSpan((int)at, 8));
            uint Be32(long at) => System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(file.AsSpan((int)at, 4));
            int clusterBits = (int)Be32(20);
            uint l1Size = Be32(36);
            long l1Offset = (long)Be64(40);
            int offsetBits = 62 - (clusterBits - 8);
            var offsets = new System.Collections.Generic.List<long>();
            for (int i = 0; i < l1Size; i++)
            {
                long l2 = (long)(Be64(l1Offset + 8L * i) & 0x00fffffffffffe00UL);
                if (l2 == 0) continue;
                for (int j = 0; j < (1 << clusterBits) / 8; j++)
                {
                    ulong entry = Be64(l2 + 8L * j);
                    if ((entry >> 62 & 1) == 1) offsets.Add((long)(entry & ((1UL << offsetBits) - 1)));
                }
            }
            return offsets.Select((o, i) => file.AsSpan((int)o, (int)((i + 1 < offsets.Count ? offsets[i + 1] : file.Length) - o)).ToArray()).ToArray();
        }

        /// <summary>
        /// With libzstd, every zstd stream is the one qemu-img writes, byte for byte, so the files have
        /// the same size but for the sector padding QEMU adds at the end of a compressed image (it
        /// truncates the file up to a 512-byte boundary when the conversion ends; we end at the last
        /// stream's last byte). The managed port (ZstdSharp) encodes differently: same data, streams
        /// of other sizes, measured within 1 % of qemu-img's total.
        /// </summary>
        [SkippableTheory]
        [InlineData(false)]
        [InlineData(true)]
        public void ZstdOutputIsTheSizeOfQemuImgs(bool managedZstd)
        {
            Qemu.Require();
            WithZstd(managedZstd, () =>
            {
                using var dir = new TempDir();
                string raw = dir.File("src.raw"), ours = dir.File("ours.qcow2"), theirs = dir.File("qemu.qcow2");
                WriteWordsRaw(raw, 64, 5);
                Qemu.Img("convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd", "-f", "raw", raw, theirs);
                Convert(raw, ours, new ConvertOptions { Compress = true, CompressionType = Qcow2CompressionType.Zstd }, "raw");
                Assert.Equal(0, Qemu.TryRun("qemu-img", "compare", theirs, ours).exitCode);
                long ourSize = new FileInfo(ours).Length, qemuSize = new FileInfo(theirs).Length;
                var ourStreams = CompressedStreams(ours);
                var qemuStreams = CompressedStreams(theirs);
                long ourBytes = ourStreams.Sum(s => (long)s.Length), qemuBytes = qemuStreams.Sum(s => (long)s.Length);
                _output.WriteLine($"zstd managed={managedZstd}: files ours {ourSize} B, qemu-img {qemuSize} B; " +
                                  $"streams ours {ourBytes} B, qemu-img {qemuBytes} B ({ourStreams.Length} vs {qemuStreams.Length})");
                Assert.Equal(qemuStreams.Length, ourStreams.Length);
                Assert.True(qemuStreams.Length >= 48, $"qemu-img compressed only {qemuStreams.Length} clusters");
                if (!managedZstd && NativeZstd.Available)
                {
                    int last = qemuStreams.Length - 1;
                    for (int i = 0; i < last; i++)
                        Assert.True(qemuStreams[i].AsSpan().SequenceEqual(ourStreams[i]), $"stream {i} differs from qemu-img's");
                    Assert.True(qemuStreams[last].AsSpan(0, ourStreams[last].Length).SequenceEqual(ourStreams[last]), "the last stream differs");
                    Assert.True(qemuStreams[last].AsSpan(ourStreams[last].Length).ToArray().All(b => b == 0), "QEMU's tail is not padding");
                    Assert.Equal(qemuSize, (ourSize + 511) / 512 * 512);
                }
                else
                {
                    Assert.InRange(ourBytes, qemuBytes * 99 / 100, qemuBytes * 101 / 100);
                }
            });
        }

        [SkippableFact]
        public void TheManagedZstdPortReadsQemusZstdImages()
        {
            Qemu.Require();
            WithZstd(true, () =>
            {
                using var dir = new TempDir();
                var image = TestImages.Make(dir, "zstd");
                string qemuRaw = dir.File("qemu.raw"), ourRaw = dir.File("ours.raw");
                Qemu.Img("convert", "-O", "raw", image.Path, qemuRaw);
                long decompressBefore = ClusterCodec.DecompressCalls;
                Convert(image.Path, ourRaw, new ConvertOptions { DestinationFormat = ImageFormat.Raw });
                Assert.True(ClusterCodec.DecompressCalls > decompressBefore, "no zstd stream was decompressed");
                Assert.Equal(Sha(qemuRaw), Sha(ourRaw));
            });
        }
    }
}
