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
