using System;
using System.Collections.Generic;
using System.Text;
using static System.Buffers.Binary.BinaryPrimitives;

namespace QcowPS.Engine.Guest.Partitions
{
    /// <summary>
    /// Writes a GPT (UEFI spec 5.3): the protective MBR in sector 0, the primary header in sector 1 and
    /// its 128-entry array in sectors 2..33, and the backup array and header in the last 33 sectors.
    /// </summary>
    internal sealed class GptWriter
    {
        private const int Sector = MbrReader.SectorSize;
        public const int EntryCount = 128;
        private const int EntryArrayBytes = EntryCount * GptHeader.EntrySize;
        private const int EntryArraySectors = EntryArrayBytes / Sector;
        /// <summary>Sectors of one copy of the table: header plus entry array.</summary>
        public const int TableSectors = 1 + EntryArraySectors;
        public const long FirstUsableLba = 1 + TableSectors;

        private readonly VirtualDisk _disk;
        private readonly long _sectors;

        public GptWriter(VirtualDisk disk)
        {
            _disk = disk;
            _sectors = disk.Length / Sector;
        }

        /// <summary>The last sector a partition may use on a disk of so many sectors: before the backup array and header.</summary>
        public static long LastUsableLba(long sectors) => sectors - 1 - TableSectors;

        public void Write(List<(long first, long count, PartitionSpec spec)> layout)
        {
            var entries = new byte[EntryArrayBytes];
            for (int i = 0; i < layout.Count; i++)
            {
                var (first, count, spec) = layout[i];
                int o = i * GptHeader.EntrySize;
                var type = spec.Type == null ? PartitionTypes.LinuxFilesystem : PartitionTypes.GptTypeFrom(spec.Type).Value;
                type.ToByteArray().CopyTo(entries, o + GptHeader.EntryTypeField);
                Guid.NewGuid().ToByteArray().CopyTo(entries, o + GptHeader.EntryGuidField);
                WriteUInt64LittleEndian(new Span<byte>(entries, o + GptHeader.EntryFirstLbaField, 8), (ulong)first);
                WriteUInt64LittleEndian(new Span<byte>(entries, o + GptHeader.EntryLastLbaField, 8), (ulong)(first + count - 1));
                if (spec.Name != null) Encoding.Unicode.GetBytes(spec.Name, 0, spec.Name.Length, entries, o + GptHeader.EntryNameField);
            }
            uint entriesCrc = Crc32.Ieee.Compute(entries, 0, entries.Length);
            long lastLba = _sectors - 1;
            var primary = new GptHeader
            {
                MyLba = 1, AlternateLba = lastLba, FirstUsableLba = FirstUsableLba, LastUsableLba = LastUsableLba(_sectors),
                DiskGuid = Guid.NewGuid(), EntriesLba = 2, EntryCount = EntryCount, EntriesCrc = entriesCrc,
            };
            var backup = new GptHeader
            {
                MyLba = lastLba, AlternateLba = 1, FirstUsableLba = primary.FirstUsableLba, LastUsableLba = primary.LastUsableLba,
                DiskGuid = primary.DiskGuid, EntriesLba = lastLba - EntryArraySectors, EntryCount = EntryCount, EntriesCrc = entriesCrc,
            };
            // Backup first, primary last: a write cut short leaves the old primary or a damaged one that
            // falls back to the complete new backup, never a valid primary pointing at a half-written backup.
            _disk.Write(backup.EntriesLba * Sector, entries, 0, entries.Length);
            _disk.Write(backup.MyLba * Sector, backup.ToSector(), 0, Sector);
            _disk.Flush();
            _disk.Write(primary.EntriesLba * Sector, entries, 0, entries.Length);
            _disk.Write(primary.MyLba * Sector, primary.ToSector(), 0, Sector);
            _disk.Write(0, ProtectiveMbr(), 0, Sector);
        }

        /// <summary>Sector 0: one partition of type EE from sector 1 over the disk (capped at 2^32 − 1 sectors), as the spec says.</summary>
        private byte[] ProtectiveMbr()
        {
            var mbr = new byte[Sector];
            long count = Math.Min(_sectors - 1, MbrWriter.MaxSectors - 1);
            MbrWriter.PutEntry(mbr, 0, PartitionTypes.GptProtective, bootable: false, 1, count);
            MbrWriter.PutSignature(mbr);
            return mbr;
        }
    }
}
