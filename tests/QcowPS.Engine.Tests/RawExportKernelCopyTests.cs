using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using QcowPS.Engine.IO;
using QcowPS.Engine.Operations;
using QcowPS.Engine.Qcow2;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;
using static QcowPS.Engine.Tests.Infrastructure.KernelCopyCalls;

namespace QcowPS.Engine.Tests
{
    /// <summary>
    /// Read-QcowBlock -OutFile (RawExporter) with stored runs copied by copy_file_range: the same file as
    /// with the kernel copy off and as qemu-img reads it, holes where nothing is stored, and a kernel that
    /// refuses part-way, or a disk that fills up during the copy, end as without the kernel copy.
    /// </summary>
    public class RawExportKernelCopyTests
    {
        private const int Block = 4096;

        /// <summary>The converter's image kinds, and a plain raw file.</summary>
        public static IEnumerable<object[]> Kinds() => TestImages.Kinds.Append(RawFileKind).Select(k => new object[] { k });

        private const string RawFileKind = "raw-file";

        private static TestImage Make(TempDir dir, string kind)
        {
            if (kind != RawFileKind) return TestImages.Make(dir, kind);
            string path = dir.File("plain.raw");
            TestImages.WriteMixedRaw(path, (8L << 20) + 512, 5);
            return new TestImage { Path = path, Format = "raw" };
        }

        /// <summary>An unaligned range that leaves out a little at each end of the disk.</summary>
        private static (long offset, long length) RangeOf(VirtualDisk disk)
        {
            long offset = 3 * Block + 1234;
            return (offset, disk.Length - offset - 5000);
        }

        private static VirtualDisk Open(TestImage image) =>
            DiskImage.Open(image.Path, new OpenOptions { Format = image.Format == "raw" ? ImageFormat.Raw : ImageFormat.Auto });

        private static void Export(TestImage image, string target, KernelCopyMode mode, KernelCopyCalls calls) =>
            Export(image, target, mode, calls.Wrap());

        private static void Export(TestImage image, string target, KernelCopyMode mode, Func<IHostFile, IHostFile> wrap)
        {
            using var disk = Open(image);
            var (offset, length) = RangeOf(disk);
            RawExporter.Export(disk, offset, length, target, false, null, mode, wrap);
        }

        private static bool HasStoredRuns(VirtualDisk disk, long offset, long length)
        {
            for (long pos = offset; pos < offset + length;)
            {
                var e = disk.GetChainExtent(pos, offset + length - pos);
                if (e.StoredFile != null) return true;
                pos += e.Length;
            }
            return false;
        }

        /// <summary>Every whole 4 KiB block of the output that lies in a run no layer stores is a hole.</summary>
        private static void AssertHolesWhereNothingIsStored(VirtualDisk disk, long offset, long length, string output, string label)
        {
            using var file = FileHostFile.Open(output, false);
            for (long pos = offset; pos < offset + length;)
            {
                var e = disk.GetChainExtent(pos, offset + length - pos);
                if (e.Type != ClusterType.Normal && e.Type != ClusterType.Compressed)
                {
                    long from = (pos - offset + Block - 1) / Block * Block, to = (pos - offset + e.Length) / Block * Block;
                    if (from < to)
                    {
                        Assert.True(file.TryFindData(from, out long dataStart, out _), $"{label}: the file system cannot tell holes");
                        Assert.True(dataStart >= to, $"{label}: data at 0x{dataStart:X} in [0x{from:X}, 0x{to:X}), which the source does not store");
                    }
                }
                pos += e.Length;
            }
        }

        /// <summary>The range as qemu-img reads it: the whole disk converted to raw by qemu-img, cut to the range.</summary>
        private static byte[] QemuReading(TempDir dir, TestImage image, long offset, long length)
        {
            string whole = dir.File("qemu.raw");
            Qemu.Img("convert", "-f", image.Format, "-O", "raw", image.Path, whole);
            var all = File.ReadAllBytes(whole);
            return all.AsSpan((int)offset, (int)length).ToArray();
        }

        [SkippableTheory]
        [MemberData(nameof(Kinds))]
        public void OutFileWithKernelCopyOnAndOffIsTheSameFileAndQemuAgrees(string kind)
        {
            Qemu.Require();
            using var dir = new TempDir();
            var image = Make(dir, kind);
            string on = dir.File("on.raw"), off = dir.File("off.raw");
            var onCalls = new KernelCopyCalls();
            Export(image, on, KernelCopyMode.Always, onCalls);
            Export(image, off, KernelCopyMode.Never, new KernelCopyCalls().Wrap(_ => MustNotRun));

            using var disk = Open(image);
            var (offset, length) = RangeOf(disk);
            var expected = QemuReading(dir, image, offset, length);
            Assert.True(File.ReadAllBytes(off).AsSpan().SequenceEqual(expected), $"{kind}: kernel copy off differs from qemu-img's reading");
            Assert.True(File.ReadAllBytes(on).AsSpan().SequenceEqual(expected), $"{kind}: kernel copy on differs from qemu-img's reading");
            AssertHolesWhereNothingIsStored(disk, offset, length, on, kind + " on");
            AssertHolesWhereNothingIsStored(disk, offset, length, off, kind + " off");
            if (HasStoredRuns(disk, offset, length))
                Assert.True(onCalls.Count > 0, $"{kind}: the kernel copy never ran");
            Assert.Empty(Directory.GetFiles(dir.Path, ".*qcowps-*"));
        }

        /// <summary>A qcow2 image of mixed data with 64 KiB clusters, and a raw file of the same.</summary>
        private static TestImage MixedImage(TempDir dir, string format)
        {
            string raw = dir.File("src.raw");
            TestImages.WriteMixedRaw(raw, 24 << 20, 9);
            if (format == "raw") return new TestImage { Path = raw, Format = "raw" };
            string src = dir.File("src.qcow2");
            Qemu.Img("convert", "-O", "qcow2", raw, src);
            return new TestImage { Path = src };
        }

        [SkippableTheory]
        [InlineData(EXDEV, "qcow2")]
        [InlineData(EOPNOTSUPP, "qcow2")]
        [InlineData(EXDEV, "raw")]
        [InlineData(EOPNOTSUPP, "raw")]
        public void AKernelThatRefusesPartWayFallsBackToWritingTheBuffer(int errno, string format)
        {
            Qemu.Require();
            using var dir = new TempDir();
            var image = MixedImage(dir, format);
            string actual = dir.File("actual.raw");
            // The first call copies half of what it is asked for; every later one is refused.
            int made = 0;
            var calls = new KernelCopyCalls();
            Export(image, actual, KernelCopyMode.Always, calls.Wrap(real =>
                (int inFd, long inOffset, int outFd, long outOffset, long count, out int e) =>
                {
                    if (Interlocked.Increment(ref made) == 1) return real(inFd, inOffset, outFd, outOffset, Math.Max(1, count / 2), out e);
                    e = errno;
                    return -1;
                }));
            Assert.True(calls.Count >= 2, $"only {calls.Count} copy calls: the refusal was never met");
            using var disk = Open(image);
            var (offset, length) = RangeOf(disk);
            Assert.True(File.ReadAllBytes(actual).AsSpan().SequenceEqual(QemuReading(dir, image, offset, length)), "the fallback wrote something else");
        }

        [SkippableTheory]
        [InlineData("qcow2")]
        [InlineData("raw")]
        public void AFullDiskDuringAKernelCopyLeavesNoDestination(string format)
        {
            Qemu.Require();
            using var dir = new TempDir();
            var image = MixedImage(dir, format);
            var before = File.ReadAllBytes(image.Path);
            string target = dir.File("full.raw");
            int made = 0;
            var calls = new KernelCopyCalls();
            var e = Assert.Throws<QcowException>(() => Export(image, target, KernelCopyMode.Always, calls.Wrap(real =>
                (int inFd, long inOffset, int outFd, long outOffset, long count, out int errno) =>
                {
                    // Enough calls succeed for part of the file to be written before the disk is full.
                    if (Interlocked.Increment(ref made) < 3) return real(inFd, inOffset, outFd, outOffset, Math.Min(count, 1 << 20), out errno);
                    errno = ENOSPC;
                    return -1;
                })));
            Assert.Equal(QcowErrorKind.IoError, e.Kind);
            Assert.Contains("No space left on device", e.Message);
            Assert.True(calls.Count >= 3, $"only {calls.Count} copy calls: the full disk was never met");
            Assert.False(File.Exists(target));
            Assert.Empty(Directory.GetFiles(dir.Path, ".*qcowps-*"));
            Assert.True(before.AsSpan().SequenceEqual(File.ReadAllBytes(image.Path)), "the source changed");
        }
    }
}
