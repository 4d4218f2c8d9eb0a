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
    /// Stored runs copied by copy_file_range: the same output as writing them from the buffer, and a
    /// kernel that refuses the call part-way, or a disk that fills up during it, end as without it.
    /// </summary>
    public class KernelCopyTests
    {

        public static IEnumerable<object[]> KindsAndTargets() => ConvertTests.KindsAndTargets();

        private static ConvertOptions Options(string target, KernelCopyMode mode, Func<IHostFile, IHostFile> wrap = null)
        {
            var o = ConvertTests.OptionsFor(target);
            o.Threads = 2;
            o.KernelCopyMode = mode;
            o.WrapDestination = wrap;
            return o;
        }

        private static bool HasStoredData(string path)
        {
            using var disk = DiskImage.Open(path);
            for (long pos = 0; pos < disk.Length;)
            {
                var e = disk.GetChainExtent(pos, disk.Length - pos);
                if (e.Type == ClusterType.Normal && e.Layer.StoredDataFile != null) return true;
                pos += e.Length;
            }
            return false;
        }

        [SkippableTheory]
        [MemberData(nameof(KindsAndTargets))]
        public void KernelCopyOnAndOffWriteTheSameFileAndQemuAgrees(string kind, string target)
        {
            Qemu.Require();
            using var dir = new TempDir();
            var image = TestImages.Make(dir, kind);
            string on = dir.File("on.out"), off = dir.File("off.out");
            var counter = new KernelCopyCalls();
            using (var source = DiskImage.Open(image.Path))
                ImageConverter.Convert(source, on, Options(target, KernelCopyMode.Always, counter.Wrap()));
            using (var source = DiskImage.Open(image.Path))
                ImageConverter.Convert(source, off, Options(target, KernelCopyMode.Never, new KernelCopyCalls().Wrap(_ => MustNotRun)));
            Assert.True(File.ReadAllBytes(on).AsSpan().SequenceEqual(File.ReadAllBytes(off)), $"{kind} -> {target}: the outputs differ");
            string format = target == "raw" ? "raw" : "qcow2";
            var (code, stdout, stderr) = Qemu.TryRun("qemu-img", "compare", "-f", image.Format, "-F", format, image.Path, on);
            Assert.True(code == 0, $"qemu-img compare {kind} -> {target}: {stdout}{stderr}");
            if (target != "zlib" && target != "zstd" && HasStoredData(image.Path))
                Assert.True(counter.Count > 0, $"{kind} -> {target}: the kernel copy never ran");
        }

        private static string MixedQcow2(TempDir dir)
        {
            string raw = dir.File("src.raw");
            TestImages.WriteMixedRaw(raw, 24 << 20, 9);
            string src = dir.File("src.qcow2");
            Qemu.Img("convert", "-O", "qcow2", raw, src);
            return src;
        }

        [SkippableTheory]
        [InlineData(EXDEV, "qcow2")]
        [InlineData(EOPNOTSUPP, "qcow2")]
        [InlineData(EXDEV, "raw")]
        [InlineData(EOPNOTSUPP, "raw")]
        public void AKernelThatRefusesPartWayFallsBackToWritingTheBuffer(int errno, string target)
        {
            Qemu.Require();
            using var dir = new TempDir();
            string src = MixedQcow2(dir);
            string expected = dir.File("expected.out"), actual = dir.File("actual.out");
            using (var source = DiskImage.Open(src))
                ImageConverter.Convert(source, expected, Options(target, KernelCopyMode.Never));

            // The first call copies half of what it is asked for; every later one is refused.
            int calls = 0;
            FileHostFile.CopyFileRangeCall refusing = null;
            var counter = new KernelCopyCalls();
            using (var source = DiskImage.Open(src))
                ImageConverter.Convert(source, actual, Options(target, KernelCopyMode.Always, f =>
                {
                    var real = ((FileHostFile)f).KernelCopyCall;
                    refusing = (int inFd, long inOffset, int outFd, long outOffset, long count, out int e) =>
                    {
                        if (Interlocked.Increment(ref calls) == 1) return real(inFd, inOffset, outFd, outOffset, Math.Max(1, count / 2), out e);
                        e = errno;
                        return -1;
                    };
                    return counter.Wrap(_ => refusing)(f);
                }));
            Assert.True(counter.Count >= 2, $"only {counter.Count} copy calls: the refusal was never met");
            Assert.True(File.ReadAllBytes(expected).AsSpan().SequenceEqual(File.ReadAllBytes(actual)), "the fallback wrote something else");
            Assert.Equal(0, Qemu.TryRun("qemu-img", "compare", src, actual).exitCode);
        }

        [SkippableTheory]
        [InlineData("qcow2")]
        [InlineData("raw")]
        public void AFullDiskDuringAKernelCopyLeavesNoDestination(string target)
        {
            Qemu.Require();
            using var dir = new TempDir();
            string src = MixedQcow2(dir);
            var before = File.ReadAllBytes(src);
            int calls = 0;
            var counter = new KernelCopyCalls();
            FileHostFile.CopyFileRangeCall full = null;
            using (var source = DiskImage.Open(src))
            {
                var e = Assert.Throws<QcowException>(() => ImageConverter.Convert(source, dir.File("full.out"), Options(target, KernelCopyMode.Always, f =>
                {
                    var real = ((FileHostFile)f).KernelCopyCall;
                    full = (int inFd, long inOffset, int outFd, long outOffset, long count, out int errno) =>
                    {
                        if (Interlocked.Increment(ref calls) < 3) return real(inFd, inOffset, outFd, outOffset, count, out errno);
                        errno = ENOSPC;
                        return -1;
                    };
                    return counter.Wrap(_ => full)(f);
                })));
                Assert.Equal(QcowErrorKind.IoError, e.Kind);
                Assert.Contains("No space left on device", e.Message);
            }
            Assert.False(File.Exists(dir.File("full.out")));
            Assert.Empty(Directory.GetFiles(dir.Path, ".*qcowps-*"));
            Assert.True(before.AsSpan().SequenceEqual(File.ReadAllBytes(src)), "the source changed");
        }

        [Fact]
        public void CopyFromCopiesBetweenFilesAndReportsWhatItCouldNotCopy()
        {
            using var dir = new TempDir();
            var data = new byte[300_000];
            new Random(3).NextBytes(data);
            File.WriteAllBytes(dir.File("a"), data);
            using var a = FileHostFile.Open(dir.File("a"), false);
            using var b = FileHostFile.Create(dir.File("b"), false);
            // Past the end of the source the kernel copies nothing more: the caller is told how much it did.
            Assert.Equal(data.Length - 1000, b.CopyFrom(a, 1000, 5000, data.Length));
            Assert.Equal(5000 + data.Length - 1000, b.Length);
            var back = new byte[data.Length - 1000];
            Assert.Equal(back.Length, b.ReadAt(5000, back, 0, back.Length));
            Assert.True(back.AsSpan().SequenceEqual(data.AsSpan(1000)));

            // Refused: nothing copied, and the file does not ask the kernel again.
            int calls = 0;
            b.KernelCopyCall = (int inFd, long inOffset, int outFd, long outOffset, long count, out int errno) =>
            {
                calls++;
                errno = EXDEV;
                return -1;
            };
            Assert.Equal(0, b.CopyFrom(a, 0, 0, 4096));
            Assert.Equal(0, b.CopyFrom(a, 0, 0, 4096));
            Assert.Equal(1, calls);

            // A file that is not a local file cannot be a kernel copy's source.
            using var c = FileHostFile.Create(dir.File("c"), false);
            var wrapped = new FaultInjectingFile(a, new FaultInjectingFile.Plan());
            Assert.Equal(0, c.CopyFrom(wrapped, 0, 0, 4096));
            Assert.Equal(0, c.Length);
        }

        [Fact]
        public void AlwaysAndNeverAreObeyedAndAutoAsksTheFileSystem()
        {
            Assert.True(KernelCopy.UseFor(KernelCopyMode.Always, "/tmp/x"));
            Assert.False(KernelCopy.UseFor(KernelCopyMode.Never, "/tmp/x"));
            // /proc is not a file system that shares extents.
            Assert.False(HostFileSystem.SharesExtents("/proc"));
        }
    }
}
