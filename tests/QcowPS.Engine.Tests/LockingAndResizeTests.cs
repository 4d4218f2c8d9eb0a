using System;
using System.Diagnostics;
using System.IO;
using System.Threading;
using System.Linq;
using QcowPS.Engine.Qcow2;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;

namespace QcowPS.Engine.Tests
{
    public class LockingTests
    {
        [Fact]
        public void SecondWriterIsRefusedWithInUse()
        {
            using var dir = new TempDir();
            string path = dir.File("a.qcow2");
            Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = 1 << 20 });
            using var first = DiskImage.Open(path, new OpenOptions { Writable = true });
            var e = Assert.Throws<QcowException>(() => DiskImage.Open(path, new OpenOptions { Writable = true }));
            Assert.Equal(QcowErrorKind.InUse, e.Kind);
            Assert.Contains("in use", e.Message);
            // A reader of a file being written is refused too (it could see a half-written state).
            Assert.Equal(QcowErrorKind.InUse, Assert.Throws<QcowException>(() => DiskImage.Open(path)).Kind);
            // Readers share with each other once the writer is gone.
            first.Dispose();
            using var r1 = DiskImage.Open(path);
            using var r2 = DiskImage.Open(path);
            Assert.Equal(QcowErrorKind.InUse, Assert.Throws<QcowException>(() => DiskImage.Open(path, new OpenOptions { Writable = true })).Kind);
        }

        [SkippableFact]
        public void QemuSeesOurLockAndWeSeeQemus()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = dir.File("a.qcow2");
            Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = 1 << 20 });
            using (DiskImage.Open(path, new OpenOptions { Writable = true }))
            {
                var (code, _, stderr) = Qemu.TryRun("qemu-img", "info", path);
                Assert.NotEqual(0, code);
                Assert.Contains("lock", stderr);
            }
            // qemu-io holds the image open for writing while its sleep command runs. We wait until its
            // write lock (byte 101) shows in /proc/locks before probing: our probe takes the write lock
            // itself and would make a qemu-io that opens the image later fail.
            var psi = new ProcessStartInfo("qemu-io") { RedirectStandardOutput = true, UseShellExecute = false };
            foreach (var a in new[] { "-f", "qcow2", "-c", "sleep 30000", path }) psi.ArgumentList.Add(a);
            using var qemu = Process.Start(psi);
            try
            {
                var deadline = DateTime.UtcNow.AddSeconds(25);
                while (!HoldsQemuWriteLock(path) && DateTime.UtcNow < deadline && !qemu.HasExited) Thread.Sleep(50);
                Assert.True(HoldsQemuWriteLock(path), "qemu-io did not take the image's write lock");
                QcowException e = null;
                try { DiskImage.Open(path, new OpenOptions { Writable = true }).Dispose(); }
                catch (QcowException x) { e = x; }
                Assert.NotNull(e);
                Assert.Equal(QcowErrorKind.InUse, e.Kind);
                // Force-share reading (qemu-img -U) still works.
                using var shared = DiskImage.Open(path, new OpenOptions { Lock = IO.LockMode.None });
                Assert.Equal(1 << 20, shared.Length);
            }
            finally
            {
                if (!qemu.HasExited) qemu.Kill();
                qemu.WaitForExit(10000);
            }
        }

        /// <summary>Whether some process holds an OFD lock on byte 101 (QEMU's "write" permission) of the file, per /proc/locks (adjacent locked bytes show as one range).</summary>
        private static bool HoldsQemuWriteLock(string path)
        {
            var stat = Qemu.TryRun("stat", "-c", "%i", path);
            string inode = ":" + stat.stdout.Trim() + " ";
            foreach (var line in System.IO.File.ReadAllLines("/proc/locks"))
            {
                if (!line.Contains("OFDLCK") || !line.Contains(inode)) continue;
                var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);  // ... maj:min:inode start end
                if (long.TryParse(fields[^2], out long start) && long.TryParse(fields[^1], out long end) && start <= 101 && 101 <= end)
                    return true;
            }
            return false;
        }
    }

    public class ResizeTests
    {
        [SkippableFact]
        public void GrowBeyondTheL1TableShrinkAndSnapshots()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = dir.File("r.qcow2");
            Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = 1 << 20, ClusterSize = 4096 });
            var data = new byte[200_000];
            new Random(3).NextBytes(data);
            using (var image = (Qcow2Image)DiskImage.Open(path, new OpenOptions { Writable = true }))
            {
                image.Write(100_000, data, 0, data.Length);
                uint l1Before = image.Header.L1Size;
                image.Resize(10L << 30, false);  // 4 KiB clusters: needs a much larger L1 table
                Assert.True(image.Header.L1Size > l1Before);
                image.Write((10L << 30) - 4096, data, 0, 4096);
            }
            Qemu.AssertClean(path);
            Assert.Equal(10L << 30, Qemu.Json("info", "--output=json", path).GetProperty("virtual-size").GetInt64());
            // qemu-img reads back exactly what was written before and after the growth.
            string raw = dir.File("r.raw");
            Qemu.Img("convert", "-O", "raw", path, raw);
            using (var stream = new FileStream(raw, FileMode.Open, FileAccess.Read))
            {
                var read = new byte[data.Length];
                stream.Position = 100_000;
                stream.ReadExactly(read, 0, read.Length);
                Assert.True(read.AsSpan().SequenceEqual(data), "the data written before the growth reads back differently in qemu-img");
                stream.Position = (10L << 30) - 4096;
                stream.ReadExactly(read, 0, 4096);
                Assert.True(read.AsSpan(0, 4096).SequenceEqual(data.AsSpan(0, 4096)), "the data written at the new end reads back differently in qemu-img");
            }
            File.Delete(raw);

            using (var image = (Qcow2Image)DiskImage.Open(path, new OpenOptions { Writable = true }))
            {
                var e = Assert.Throws<QcowException>(() => image.Resize(1 << 20, false));
                Assert.Contains("AllowShrink", e.Message);
                Assert.Equal(10L << 30, image.Length);
                image.Resize(200_000, true);
                Assert.Equal(200_192, image.Length);  // rounded up to 512
            }
            Qemu.AssertClean(path);
            using (var disk = DiskImage.Open(path))
            {
                var back = new byte[200_192 - 100_000];
                disk.Read(100_000, back, 0, back.Length);
                Assert.True(back.AsSpan().SequenceEqual(data.AsSpan(0, back.Length)), "data below the new end survived the shrink");
            }
            Assert.True(new FileInfo(path).Length < 1 << 20, "the shrunk image gave back its tail");

            using (var image = (Qcow2Image)DiskImage.Open(path, new OpenOptions { Writable = true }))
            {
                image.CreateSnapshot("s");
                var e = Assert.Throws<QcowException>(() => image.Resize(4096, true));
                Assert.Contains("snapshots", e.Message);
                image.Resize(1 << 30, false);  // growing with snapshots is fine on v3
            }
            Qemu.AssertClean(path);
            Assert.Equal(1L << 30, Qemu.Json("info", "--output=json", path).GetProperty("virtual-size").GetInt64());
            Assert.Equal(200_192, SnapshotDiskSize(path));  // the snapshot keeps its own disk size
        }

        private static long SnapshotDiskSize(string path)
        {
            using var image = (Qcow2Image)DiskImage.Open(path);
            return (long)image.Snapshots[0].DiskSize.Value;
        }
    }
}

namespace QcowPS.Engine.Tests
{
    public class RefcountGrowthTests
    {
        [SkippableTheory]
        [InlineData(512, 64)]
        [InlineData(512, 16)]
        [InlineData(512, 32)]
        public void WritingFarPastTheFirstRefcountBlockGrowsTheRefcountTable(int clusterSize, int refcountBits)
        {
            // 512-byte clusters with 64-bit refcounts: one refcount block counts 64 clusters (32 KiB) and the
            // first one-cluster refcount table 64 blocks (2 MiB of file), so 12 MiB of data moves the table
            // several times and adds blocks that count themselves.
            Qemu.Require();
            using var dir = new TempDir();
            string path = dir.File("grow.qcow2");
            Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = 16 << 20, ClusterSize = clusterSize, RefcountBits = refcountBits });
            var model = new byte[16 << 20];
            var random = new Random(clusterSize + refcountBits);
            ulong tableBefore;
            using (var image = (Qcow2Image)DiskImage.Open(path))
                tableBefore = image.Header.RefcountTableOffset;
            using (var image = (Qcow2Image)DiskImage.Open(path, new OpenOptions { Writable = true }))
            {
                for (int i = 0; i < 48; i++)
                {
                    var data = new byte[256 * 1024];
                    random.NextBytes(data);
                    long offset = (long)random.Next(0, 64) * 256 * 1024;
                    image.Write(offset, data, 0, data.Length);
                    Array.Copy(data, 0, model, offset, data.Length);
                }
            }
            using (var image = (Qcow2Image)DiskImage.Open(path))
            {
                Assert.NotEqual(tableBefore, image.Header.RefcountTableOffset);
                var back = new byte[model.Length];
                image.Read(0, back, 0, back.Length);
                Assert.True(model.AsSpan().SequenceEqual(back));
            }
            Qemu.AssertClean(path);
            string raw = dir.File("check.raw");
            Qemu.Img("convert", "-O", "raw", path, raw);
            Assert.True(model.AsSpan().SequenceEqual(System.IO.File.ReadAllBytes(raw)));
        }
    }
}

namespace QcowPS.Engine.Tests
{
    public class BitmapTests
    {
        [SkippableFact]
        public void BitmapsAreKeptListedAndUpdatedWhenWeWrite()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = dir.File("b.qcow2");
            Qemu.Img("create", "-f", "qcow2", path, "8M");
            Qemu.Img("bitmap", "--add", path, "backup-0");
            Qemu.IoCommands(path, "qcow2", "write -P 7 0 64k");
            using (var disk = (Qcow2Image)DiskImage.Open(path))
            {
                var info = Operations.ImageInspector.Describe(disk);
                Assert.Contains("Bitmaps", info.HeaderExtensions);
                Assert.Equal(1, info.BitmapCount);
                Assert.Equal(Qcow2AutoclearFeatures.Bitmaps, info.AutoclearFeatures & Qcow2AutoclearFeatures.Bitmaps);
                Assert.True(disk.Check().IsConsistent);  // the bitmap's clusters count as used
            }
            Qemu.AssertClean(path);
            using (var disk = DiskImage.Open(path, new OpenOptions { Writable = true }))
                disk.Write(65536, new byte[4096], 0, 4096);
            // Our write updated the bitmap (QEMU's 64 KiB and ours), stored cleanly: not in use.
            using (var disk = (Qcow2Image)DiskImage.Open(path))
            {
                Assert.Equal(1u, disk.Header.BitmapCount);
                Assert.Equal(2 * 65536L, disk.GetBitmapDirtyBytes("backup-0"));
            }
            var bitmap = Qemu.Json("info", "--output=json", path).GetProperty("format-specific").GetProperty("data").GetProperty("bitmaps")[0];
            Assert.DoesNotContain("in-use", bitmap.GetProperty("flags").EnumerateArray().Select(f => f.GetString()));
            Qemu.AssertClean(path);
        }
    }
}
