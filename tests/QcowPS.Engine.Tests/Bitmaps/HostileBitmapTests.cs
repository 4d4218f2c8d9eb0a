using System;
using QcowPS.Engine.Qcow2;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;

namespace QcowPS.Engine.Tests.Bitmaps
{
    /// <summary>
    /// Damaged bitmap metadata: reading it is a Corrupt error naming what is wrong (never another
    /// exception, a hang or a huge allocation); writing the disk still works, the damaged bitmaps
    /// are dropped or marked in use, and qemu-img check finds no corruption QcowPS added.
    /// </summary>
    public class HostileBitmapTests
    {
        // Directory entry fields (spec: Bitmap directory).
        private const int TableOffset = 0, TableSize = 8, NameSize = 18, ExtraDataSize = 20;

        public static TheoryData<string, bool> Cases => new TheoryData<string, bool>
        {
            // (what is damaged, whether the directory itself is unreadable)
            { "name size 0", true },
            { "extra data past the directory", true },
            { "table offset not a cluster", true },
            { "table past the end of the file", true },
            { "table entry with reserved bits", false },
            { "table entry past the end of the file", false },
            { "table size wrong for the disk", true },  // 2^31 entries run past the file: the directory is rejected
        };

        [SkippableTheory]
        [MemberData(nameof(Cases))]
        public void DamagedBitmapsAreCorruptErrorsAndWritesStillWork(string damage, bool directoryLevel)
        {
            Qemu.Require();
            using var dir = new TempDir();
            string image = dir.File("h.qcow2");
            Qemu.Img("create", "-f", "qcow2", image, "4M");
            Qemu.Img("bitmap", "--add", "-g", "512", image, "b0");
            Qemu.IoCommands(image, "qcow2", "write -P 1 0 64k");
            long dirOffset, table;
            using (var disk = (Qcow2Image)DiskImage.Open(image, new OpenOptions()))
            {
                dirOffset = (long)disk.Header.BitmapDirectoryOffset;
                table = disk.FindBitmap("b0").TableOffset;
            }
            switch (damage)
            {
                case "name size 0": FilePatch.Bytes(image, dirOffset + NameSize, new byte[2]); break;
                case "extra data past the directory": FilePatch.U32(image, dirOffset + ExtraDataSize, 0x7FFF_FFF0); break;
                case "table offset not a cluster": FilePatch.U64(image, dirOffset + TableOffset, (ulong)table + 512); break;
                case "table past the end of the file": FilePatch.U64(image, dirOffset + TableOffset, 1UL << 50); break;
                case "table entry with reserved bits": FilePatch.U64(image, table, FilePatch.ReadU64(image, table) | 0x2); break;
                case "table entry past the end of the file": FilePatch.U64(image, table, 1UL << 45); break;
                case "table size wrong for the disk": FilePatch.U32(image, dirOffset + TableSize, 0x7FFF_FFFF); break;
            }

            using (var disk = (Qcow2Image)DiskImage.Open(image, new OpenOptions()))
            {
                var e = Assert.ThrowsAny<QcowException>(() => disk.GetBitmapExtents("b0"));
                Assert.True(e.Kind == QcowErrorKind.Corrupt || e.Kind == QcowErrorKind.Unsupported, $"{damage}: {e.Kind} {e.Message}");
                Assert.Contains("bitmap", e.Message, StringComparison.OrdinalIgnoreCase);
            }
            var data = new byte[4096];
            new Random(3).NextBytes(data);
            using (var disk = DiskImage.Open(image, new OpenOptions { Writable = true })) disk.Write(100_000, data, 0, data.Length);
            using (var disk = (Qcow2Image)DiskImage.Open(image, new OpenOptions()))
            {
                var back = new byte[4096];
                disk.Read(100_000, back, 0, back.Length);
                Assert.Equal(data, back);
                if (directoryLevel) Assert.Empty(disk.Bitmaps);  // dropped: the autoclear bit cleared
                else Assert.True(disk.FindBitmap("b0").InUse, $"{damage}: a damaged enabled bitmap must be left marked in use");
            }
            if (directoryLevel) Assert.Equal(0, Qemu.Check(image).corruptions);
        }
    }
}
