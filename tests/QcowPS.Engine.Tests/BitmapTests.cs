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
