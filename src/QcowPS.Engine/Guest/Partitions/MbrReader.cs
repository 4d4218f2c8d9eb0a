using System.Collections.Generic;
using System.Text;
using static System.Buffers.Binary.BinaryPrimitives;

namespace QcowPS.Engine.Guest.Partitions
{
    /// <summary>
    /// Reads a DOS/MBR partition table: the four primary entries of sector 0 and the chain of extended
    /// boot records behind an extended partition (logical partitions 5, 6, ...).
    /// </summary>
    internal sealed class MbrReader
    {
        public const int SectorSize = 512;
        // The MBR layout, shared with MbrWriter: the partition entries, and each entry's fields.
        internal const int EntriesOffset = 446;
        internal const int EntrySize = 16;
        internal const int SignatureOffset = 510;
        internal const int StatusField = 0;
        internal const int FirstChsField = 1;
        internal const int TypeField = 4;
        internal const int LastChsField = 5;
        internal const int StartLbaField = 8;
        internal const int SectorCountField = 12;
        internal const byte BootableFlag = 0x80;
        /// <summary>More logical partitions than any tool makes: a longer chain is hostile (or a loop).</summary>
        private const int MaxLogicalPartitions = 256;

        private readonly VirtualDisk _disk;
        private readonly long _sectors;

        public MbrReader(VirtualDisk disk)
        {
            _disk = disk;
            _sectors = disk.Length / SectorSize;
        }

        /// <summary>The raw primary entries of sector 0, or null when sector 0 holds no MBR.</summary>
        public (byte type, byte status, uint start, uint count)[] ReadPrimaryEntries()
        {
            if (_sectors < 1) return null;
            var sector = ReadSector(0);
            if (sector[SignatureOffset] != 0x55 || sector[SignatureOffset + 1] != 0xAA) return null;
            // A FAT, NTFS or exFAT boot sector carries the same 55 AA signature: that is a file system on the whole disk.
            if (LooksLikeBootSector(sector)) return null;
            var entries = new (byte, byte, uint, uint)[4];
            for (int i = 0; i < 4; i++)
            {
                int o = EntriesOffset + i * EntrySize;
                byte status = sector[o + StatusField];
                if (status != 0 && status != BootableFlag) return null;
                entries[i] = (sector[o + TypeField], status,
                    ReadUInt32LittleEndian(new System.ReadOnlySpan<byte>(sector, o + StartLbaField, 4)),
                    ReadUInt32LittleEndian(new System.ReadOnlySpan<byte>(sector, o + SectorCountField, 4)));
            }
            return entries;
        }

        private static bool LooksLikeBootSector(byte[] s)
        {
            string oem = Encoding.ASCII.GetString(s, 3, 8);
            if (oem == "NTFS    " || oem == "EXFAT   ") return true;
            // FAT: a jump instruction and a sane BIOS parameter block (bytes per sector, sectors per cluster, FAT count).
            if (s[0] != 0xEB && s[0] != 0xE9) return false;
            int bytesPerSector = s[11] | (s[12] << 8);
            int perCluster = s[13];
            return (bytesPerSector == 512 || bytesPerSector == 1024 || bytesPerSector == 2048 || bytesPerSector == 4096)
                && perCluster != 0 && (perCluster & (perCluster - 1)) == 0 && (s[16] == 1 || s[16] == 2)
                && (Encoding.ASCII.GetString(s, 54, 3) == "FAT" || Encoding.ASCII.GetString(s, 82, 3) == "FAT");
        }

        /// <summary>Fills the table from the MBR entries (and the logical partitions of an extended one).</summary>
        public void Read((byte type, byte status, uint start, uint count)[] entries, PartitionTable table)
        {
            table.Style = PartitionTable.Mbr;
            for (int i = 0; i < 4; i++)
            {
                var e = entries[i];
                if (e.type == 0 || e.count == 0) continue;
                bool extended = PartitionTypes.IsExtended(e.type);
                Add(table, i + 1, e.type, e.status, e.start, e.count, extended ? "Extended" : "Primary");
                if (extended) ReadLogical(table, e.start, e.count);
            }
        }

        private void ReadLogical(PartitionTable table, long extendedStart, long extendedCount)
        {
            long ebr = extendedStart;
            int number = 5;
            var seen = new HashSet<long>();
            while (true)
            {
                if (ebr >= _sectors || !seen.Add(ebr))
                {
                    table.Warnings.Add($"The extended boot record chain points to sector {ebr}, {(ebr >= _sectors ? "past the end of the disk" : "which it already visited (a loop)")}");
                    table.Verified = false;
                    return;
                }
                if (number - 4 > MaxLogicalPartitions)
                {
                    table.Warnings.Add($"More than {MaxLogicalPartitions} logical partitions: the chain is not followed further");
                    table.Verified = false;
                    return;
                }
                var sector = ReadSector(ebr);
                if (sector[SignatureOffset] != 0x55 || sector[SignatureOffset + 1] != 0xAA)
                {
                    // An empty extended partition has a zeroed first EBR: no logical partitions.
                    if (ebr != extendedStart) { table.Warnings.Add($"The extended boot record at sector {ebr} has no 55 AA signature"); table.Verified = false; }
                    return;
                }
                int o = EntriesOffset;
                byte type = sector[o + TypeField];
                uint start = U32(sector, o + StartLbaField), count = U32(sector, o + SectorCountField);
                if (type != 0 && count != 0) Add(table, number++, type, sector[o + StatusField], ebr + start, count, "Logical");
                int n = EntriesOffset + EntrySize;
                uint next = U32(sector, n + StartLbaField);
                if (sector[n + TypeField] == 0 || next == 0) return;
                if (next >= extendedCount)
                {
                    table.Warnings.Add($"The extended boot record at sector {ebr} links to sector {extendedStart + next}, outside its extended partition");
                    table.Verified = false;
                    return;
                }
                ebr = extendedStart + next;
            }
        }

        private void Add(PartitionTable table, int number, byte type, byte status, long start, long count, string kind)
        {
            if (start + count > _sectors)
            {
                table.Warnings.Add($"MBR partition {number} (sectors {start}..{start + count - 1}) reaches past the end of the disk ({_sectors} sectors)");
                table.Verified = false;
            }
            table.Partitions.Add(new QcowPartition
            {
                Table = PartitionTable.Mbr, Number = number, Type = PartitionTypes.NameOf(type), TypeId = type.ToString("x2"),
                Offset = start * SectorSize, Size = count * SectorSize, Bootable = status == BootableFlag, Kind = kind,
            });
        }

        private static uint U32(byte[] b, int o) => ReadUInt32LittleEndian(new System.ReadOnlySpan<byte>(b, o, 4));

        private byte[] ReadSector(long lba)
        {
            var b = new byte[SectorSize];
            _disk.Read(lba * SectorSize, b, 0, SectorSize);
            return b;
        }
    }
}
