using System;
using System.Collections.Generic;
using System.IO;
using QcowPS.Engine.Qcow2;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;

namespace QcowPS.Engine.Tests
{
    /// <summary>New images in every option combination pass qemu-img check and report the same fields to qemu-img info.</summary>
    public class CreateTests
    {
        public static IEnumerable<object[]> Matrix()
        {
            // name, version, cluster size, refcount bits, lazy, extended L2, zstd, backing, preallocation, size
            yield return new object[] { "default", 3, 65536, 16, false, false, false, false, Preallocation.Off, 64L << 20 };
            yield return new object[] { "v2", 2, 65536, 16, false, false, false, false, Preallocation.Off, 64L << 20 };
            yield return new object[] { "v2-512", 2, 512, 16, false, false, false, false, Preallocation.Off, 3L << 20 };
            yield return new object[] { "512", 3, 512, 16, false, false, false, false, Preallocation.Off, 5L << 20 };
            yield return new object[] { "4k", 3, 4096, 16, false, false, false, false, Preallocation.Off, 100L << 20 };
            yield return new object[] { "2m", 3, 2 << 20, 16, false, false, false, false, Preallocation.Off, 1L << 30 };
            yield return new object[] { "refcount1", 3, 65536, 1, false, false, false, false, Preallocation.Off, 64L << 20 };
            yield return new object[] { "refcount64", 3, 65536, 64, false, false, false, false, Preallocation.Off, 64L << 20 };
            yield return new object[] { "refcount1-512", 3, 512, 1, false, false, false, false, Preallocation.Off, 2L << 20 };
            yield return new object[] { "refcount64-512", 3, 512, 64, false, false, false, false, Preallocation.Off, 2L << 20 };
            yield return new object[] { "lazy", 3, 65536, 16, true, false, false, false, Preallocation.Off, 64L << 20 };
            yield return new object[] { "extl2", 3, 65536, 16, false, true, false, false, Preallocation.Off, 64L << 20 };
            yield return new object[] { "extl2-16k", 3, 16384, 16, false, true, false, false, Preallocation.Off, 64L << 20 };
            yield return new object[] { "zstd", 3, 65536, 16, false, false, true, false, Preallocation.Off, 64L << 20 };
            yield return new object[] { "backing", 3, 65536, 16, false, false, false, true, Preallocation.Off, 0L };
            yield return new object[] { "backing-v2", 2, 65536, 16, false, false, false, true, Preallocation.Off, 0L };
            yield return new object[] { "metadata", 3, 65536, 16, false, false, false, false, Preallocation.Metadata, 64L << 20 };
            yield return new object[] { "metadata-512", 3, 512, 16, false, false, false, false, Preallocation.Metadata, 2L << 20 };
            yield return new object[] { "full", 3, 65536, 16, false, false, false, false, Preallocation.Full, 16L << 20 };
            yield return new object[] { "full-v2", 2, 4096, 16, false, false, false, false, Preallocation.Full, 8L << 20 };
            yield return new object[] { "extl2-backing-metadata", 3, 65536, 16, false, true, false, true, Preallocation.Metadata, 0L };
            yield return new object[] { "odd-size", 3, 65536, 16, false, false, false, false, Preallocation.Off, 1000L };
            yield return new object[] { "empty", 3, 65536, 16, false, false, false, false, Preallocation.Off, 0L };
        }

        [SkippableTheory]
        [MemberData(nameof(Matrix))]
        public void CreatedImagesAreCleanAndQemuAgrees(string name, int version, int clusterSize, int refcountBits, bool lazy,
            bool extendedL2, bool zstd, bool backing, Preallocation prealloc, long size)
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = dir.File(name + ".qcow2");
            var options = new Qcow2CreateOptions
            {
                Version = version, ClusterSize = clusterSize, RefcountBits = refcountBits, LazyRefcounts = lazy,
                ExtendedL2 = extendedL2, CompressionType = zstd ? Qcow2CompressionType.Zstd : Qcow2CompressionType.Zlib,
                Preallocation = prealloc, Size = backing ? (long?)null : size,
            };
            if (backing)
            {
                Qemu.Img("create", "-f", "qcow2", dir.File("base.qcow2"), "12M");
                Qemu.IoCommands(dir.File("base.qcow2"), "qcow2", "write -P 0x42 0 1M");
                options.BackingFile = "base.qcow2";
            }
            Qcow2Creator.Create(path, options);
            Qemu.AssertClean(path);

            var info = Qemu.Json("info", "--output=json", path);
            var data = info.GetProperty("format-specific").GetProperty("data");
            Assert.Equal(backing ? 12L << 20 : (size + 511) / 512 * 512, info.GetProperty("virtual-size").GetInt64());
            Assert.Equal(clusterSize, info.GetProperty("cluster-size").GetInt32());
            Assert.Equal(version == 2 ? "0.10" : "1.1", data.GetProperty("compat").GetString());
            Assert.Equal(refcountBits, data.GetProperty("refcount-bits").GetInt32());
            Assert.Equal(zstd ? "zstd" : "zlib", data.GetProperty("compression-type").GetString());
            if (version == 3)
            {
                Assert.Equal(lazy, data.GetProperty("lazy-refcounts").GetBoolean());
                Assert.Equal(extendedL2, data.GetProperty("extended-l2").GetBoolean());
            }
            if (backing)
            {
                Assert.Equal("base.qcow2", info.GetProperty("backing-filename").GetString());
                Assert.Equal("qcow2", info.GetProperty("backing-filename-format").GetString());
            }

            // The same options through qemu-img give the same metadata layout size (prealloc aside, within a few clusters).
            if (prealloc == Preallocation.Off && !backing)
            {
                string theirs = dir.File("theirs.qcow2");
                var o = $"compat={(version == 2 ? "0.10" : "1.1")},cluster_size={clusterSize},refcount_bits={refcountBits}" +
                        (version == 3 ? $",lazy_refcounts={(lazy ? "on" : "off")},extended_l2={(extendedL2 ? "on" : "off")},compression_type={(zstd ? "zstd" : "zlib")}" : "");
                Qemu.Img("create", "-f", "qcow2", "-o", o, theirs, size.ToString());
                Assert.InRange(new FileInfo(path).Length, new FileInfo(theirs).Length - 2L * clusterSize, new FileInfo(theirs).Length + 2L * clusterSize);
            }

            // QEMU writes into our image and both read it the same.
            long virtualSize = info.GetProperty("virtual-size").GetInt64();
            if (virtualSize >= 1 << 20)
            {
                Qemu.IoCommands(path, "qcow2", "write -P 0x77 4096 70000", $"write -P 0x78 {virtualSize - 512} 512");
                Qemu.AssertClean(path);
                using var disk = DiskImage.Open(path);
                ImageAssert.MatchesQemu(dir, path, disk);
            }
        }

        [Fact]
        public void TooLargeForTheClusterSizeNamesTheLimitAndTheSmallestClusterThatWorks()
        {
            using var dir = new TempDir();
            var e = Assert.Throws<QcowException>(() => Qcow2Creator.Create(dir.File("x.qcow2"), new Qcow2CreateOptions { Size = 1L << 40, ClusterSize = 512 }));
            Assert.Equal(QcowErrorKind.InvalidArgument, e.Kind);
            Assert.Contains("4194304", e.Message);
            Assert.Contains("smallest cluster size that holds it is 2 KiB", e.Message);
            Assert.False(File.Exists(dir.File("x.qcow2")));
        }

        [SkippableFact]
        public void ExabyteImageLikeQemuImg()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string ours = dir.File("ours.qcow2"), theirs = dir.File("theirs.qcow2");
            Qcow2Creator.Create(ours, new Qcow2CreateOptions { Size = 1L << 60, ClusterSize = 2 << 20 });
            Qemu.Img("create", "-f", "qcow2", "-o", "cluster_size=2M", theirs, "1048576T");
            Assert.Equal(new FileInfo(theirs).Length, new FileInfo(ours).Length);
            Qemu.AssertClean(ours);
            Assert.Equal(1152921504606846976L, Qemu.Json("info", "--output=json", ours).GetProperty("virtual-size").GetInt64());
        }

        [Fact]
        public void ExistingFileIsNeverReplacedWithoutOverwrite()
        {
            using var dir = new TempDir();
            string path = dir.File("keep.qcow2");
            File.WriteAllText(path, "precious");
            var e = Assert.Throws<QcowException>(() => Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = 1 << 20 }));
            Assert.Equal(QcowErrorKind.AlreadyExists, e.Kind);
            Assert.Equal("precious", File.ReadAllText(path));
            Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = 1 << 20, Overwrite = true });
            using var disk = DiskImage.Open(path);
            Assert.Equal(1 << 20, disk.Length);
            Assert.Single(Directory.GetFiles(dir.Path));
        }

        [Theory]
        [InlineData(2, 8, false, false, "16-bit refcounts")]
        [InlineData(2, 16, true, false, "Lazy refcounts need a version 3")]
        [InlineData(3, 3, false, false, "power of two")]
        [InlineData(3, 16, false, true, "16 KiB")]
        public void InvalidOptionCombinationsAreRefused(int version, int refcountBits, bool lazy, bool extendedL2Small, string words)
        {
            using var dir = new TempDir();
            var e = Assert.Throws<QcowException>(() => Qcow2Creator.Create(dir.File("x.qcow2"), new Qcow2CreateOptions
            {
                Size = 1 << 20, Version = version, RefcountBits = refcountBits, LazyRefcounts = lazy,
                ExtendedL2 = extendedL2Small, ClusterSize = extendedL2Small ? 4096 : 65536,
            }));
            Assert.Equal(QcowErrorKind.InvalidArgument, e.Kind);
            Assert.Contains(words, e.Message);
            Assert.Empty(Directory.GetFiles(dir.Path));
        }
    }
}
