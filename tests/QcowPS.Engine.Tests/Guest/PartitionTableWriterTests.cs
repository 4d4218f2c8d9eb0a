using System;
using System.Linq;
using System.Text;
using QcowPS.Engine.Guest.Partitions;
using QcowPS.Engine.Raw;
using Xunit;

namespace QcowPS.Engine.Tests.Guest
{
    /// <summary>
    /// New partition tables at sizes no host file or qcow2 image reaches (2^63 − 513 bytes, the size older
    /// QEMU documented as its limit, with 511 bytes past the last whole sector), on a sparse in-memory raw
    /// disk. The interop tests (New-QcowPartitionTable.Tests.ps1) check 1 EiB and 2 EiB with qemu-nbd.
    /// </summary>
    public class PartitionTableWriterTests
    {
        private const long Sector = 512;

        [Theory]
        [InlineData(long.MaxValue - 512)]              // 2^63 − 513
        [InlineData(long.MaxValue - (1L << 30) + 1)]   // QEMU's BDRV_MAX_LENGTH, 2^63 − 2^30
        [InlineData(1L << 60)]                         // 1 EiB
        [InlineData((1L << 32) * 512 + 4095)]          // just past 2 TiB, not a whole number of sectors
        [InlineData(2 * 1048576 + 34 * 512 + 512)]       // barely room for a 1 MiB partition
        public void A_default_gpt_reads_back_with_its_backup_in_the_last_whole_sector_and_touches_only_the_tables(long length)
        {
            var file = new SparseMemoryFile(length);
            using (var disk = RawImage.Open(file))
            {
                PartitionTableWriter.Write(disk, "Gpt", null);
                var table = PartitionTableReader.Read(disk);
                Assert.Empty(table.Warnings);
                Assert.True(table.Verified);
                Assert.Equal(PartitionTable.Gpt, table.Style);
                var p = Assert.Single(table.Partitions);
                long sectors = length / Sector;
                Assert.Equal(1L << 20, p.Offset);
                Assert.True(p.Offset + p.Size <= (sectors - 33) * Sector, "the partition ends before the backup entry array");

                var last = new byte[Sector];
                disk.Read((sectors - 1) * Sector, last, 0, (int)Sector);
                Assert.Equal("EFI PART", Encoding.ASCII.GetString(last, 0, 8));
                Assert.Equal(sectors - 1, BitConverter.ToInt64(last, 24));   // MyLBA
                Assert.Equal(1, BitConverter.ToInt64(last, 32));             // AlternateLBA
                Assert.Equal(sectors - 33, BitConverter.ToInt64(last, 72));  // backup entries

                // Only the pages of the protective MBR, primary and backup tables were written (34 + 33 sectors).
                Assert.True(file.WrittenPages.All(page => page < (34 * Sector + 4095) / 4096 || page >= (sectors - 33) * Sector / 4096),
                    "pages written: " + string.Join(", ", file.WrittenPages));
            }
        }

        [Fact]
        public void An_mbr_past_2_TiB_is_refused_naming_the_limit_and_nothing_is_written()
        {
            var file = new SparseMemoryFile(long.MaxValue - 512);
            using (var disk = RawImage.Open(file))
            {
                var e = Assert.Throws<QcowException>(() => PartitionTableWriter.Write(disk, "Mbr", null));
                Assert.Equal(QcowErrorKind.InvalidArgument, e.Kind);
                Assert.Contains("2 TiB", e.Message);
                Assert.Empty(file.WrittenPages);
            }
        }

        [Fact]
        public void A_disk_too_small_for_an_aligned_partition_is_refused()
        {
            var file = new SparseMemoryFile(1 << 20);
            using (var disk = RawImage.Open(file))
            {
                var e = Assert.Throws<QcowException>(() => PartitionTableWriter.Write(disk, "Gpt", null));
                Assert.Contains("too small", e.Message);
                Assert.Empty(file.WrittenPages);
            }
        }
    }
}
