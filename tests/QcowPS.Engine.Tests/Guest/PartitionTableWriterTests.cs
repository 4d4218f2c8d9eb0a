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

        [Theory]
        [InlineData(5)]
        [InlineData(9)]
        [InlineData(MbrWriter.MaxPartitions)]
        public void An_mbr_of_more_than_four_partitions_has_logical_ones_behind_ebrs_linked_relative_to_the_extended_partition(int count)
        {
            const long length = 1L << 30, mib = 1L << 20;
            var file = new SparseMemoryFile(length);
            using (var disk = RawImage.Open(file))
            {
                // 3 MiB each (3.5 MiB for the odd ones: off the 1 MiB grid), the last one the rest of the disk.
                var specs = Enumerable.Range(0, count).Select(i => new PartitionSpec { Size = i == count - 1 ? (long?)null : 3 * mib + i % 2 * mib / 2 }).ToList();
                PartitionTableWriter.Write(disk, "Mbr", specs);
                var table = PartitionTableReader.Read(disk);
                Assert.Empty(table.Warnings);
                Assert.True(table.Verified);
                var expectedNumbers = new[] { 1, 2, 3, 4 }.Concat(Enumerable.Range(5, count - 3));
                Assert.Equal(expectedNumbers, table.Partitions.Select(p => p.Number));
                Assert.Equal(new[] { "Primary", "Primary", "Primary", "Extended" }.Concat(Enumerable.Repeat("Logical", count - 3)), table.Partitions.Select(p => p.Kind));

                var extended = table.Partitions[3];
                Assert.Equal("05", extended.TypeId);
                Assert.Equal(AlignUp(table.Partitions[2].Offset + table.Partitions[2].Size), extended.Offset);
                Assert.Equal(length, extended.Offset + extended.Size);
                var logicals = table.Partitions.Skip(4).ToList();
                Assert.Equal(length, logicals[logicals.Count - 1].Offset + logicals[logicals.Count - 1].Size);
                long extendedStart = extended.Offset / Sector, previousEnd = extended.Offset;
                for (int i = 0; i < logicals.Count; i++)
                {
                    // The EBR on the next 1 MiB boundary, its logical partition 1 MiB after it, as sfdisk places them.
                    long ebr = AlignUp(previousEnd);
                    Assert.Equal(ebr + mib, logicals[i].Offset);
                    var sector = new byte[Sector];
                    disk.Read(ebr, sector, 0, (int)Sector);
                    Assert.Equal(0x55, sector[MbrReader.SignatureOffset]);
                    Assert.Equal(0xAA, sector[MbrReader.SignatureOffset + 1]);
                    int entry = MbrReader.EntriesOffset, link = MbrReader.EntriesOffset + MbrReader.EntrySize;
                    Assert.Equal(mib / Sector, BitConverter.ToUInt32(sector, entry + MbrReader.StartLbaField));   // relative to this EBR
                    Assert.Equal(logicals[i].Size / Sector, BitConverter.ToUInt32(sector, entry + MbrReader.SectorCountField));
                    if (i + 1 < logicals.Count)
                    {
                        long nextEbr = logicals[i + 1].Offset / Sector - mib / Sector;
                        Assert.Equal(0x05, sector[link + MbrReader.TypeField]);
                        Assert.Equal(nextEbr - extendedStart, BitConverter.ToUInt32(sector, link + MbrReader.StartLbaField));   // relative to the extended partition
                        Assert.Equal((logicals[i + 1].Offset + logicals[i + 1].Size) / Sector - nextEbr, BitConverter.ToUInt32(sector, link + MbrReader.SectorCountField));
                    }
                    else
                    {
                        Assert.All(new ArraySegment<byte>(sector, link, MbrReader.EntrySize), b => Assert.Equal(0, b));
                    }
                    previousEnd = logicals[i].Offset + logicals[i].Size;
                }
            }
        }

        [Fact]
        public void An_mbr_of_more_partitions_than_fdisk_numbers_is_refused_and_nothing_is_written()
        {
            var file = new SparseMemoryFile(1L << 30);
            using (var disk = RawImage.Open(file))
            {
                var specs = Enumerable.Range(0, MbrWriter.MaxPartitions + 1).Select(i => new PartitionSpec { Size = 1L << 20 }).ToList();
                var e = Assert.Throws<QcowException>(() => PartitionTableWriter.Write(disk, "Mbr", specs));
                Assert.Equal(QcowErrorKind.InvalidArgument, e.Kind);
                Assert.Contains($"at most {MbrWriter.MaxPartitions} partitions", e.Message);
                Assert.Empty(file.WrittenPages);
            }
        }

        private static long AlignUp(long offset) => (offset + (1L << 20) - 1) >> 20 << 20;

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
