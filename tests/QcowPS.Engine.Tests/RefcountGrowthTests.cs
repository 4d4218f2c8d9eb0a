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
