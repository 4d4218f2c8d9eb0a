using System;
using System.Text;

namespace QcowPS.Engine.Guest.Partitions
{
    /// <summary>
    /// Reads a GPT: the primary header at sector 1 and the backup at the last sector, each with its
    /// header and entry-array CRCs checked. A damaged primary falls back to the backup (with a warning);
    /// with neither valid the table is reported unverified and empty.
    /// </summary>
    internal sealed class GptReader
    {
        private const int Sector = MbrReader.SectorSize;
        private readonly VirtualDisk _disk;
        private readonly long _sectors;

        public GptReader(VirtualDisk disk)
        {
            _disk = disk;
            _sectors = disk.Length / Sector;
        }

        /// <summary>Whether sector 1 (or the last sector) carries a GPT signature at all.</summary>
        public bool HasSignature() =>
            _sectors >= 3 && (Encoding.ASCII.GetString(ReadSectors(1, 1), 0, 8) == GptHeader.Signature
                              || Encoding.ASCII.GetString(ReadSectors(_sectors - 1, 1), 0, 8) == GptHeader.Signature);

        public void Read(PartitionTable table)
        {
            table.Style = PartitionTable.Gpt;
            var primary = Load(1, out string primaryProblem, out byte[] primaryEntries);
            long backupLba = primary != null && primary.AlternateLba > 1 && primary.AlternateLba < _sectors ? primary.AlternateLba : _sectors - 1;
            var backup = Load(backupLba, out string backupProblem, out byte[] backupEntries);
            if (backup == null && backupLba != _sectors - 1) backup = Load(_sectors - 1, out backupProblem, out backupEntries);

            GptHeader header;
            byte[] entries;
            if (primary != null)
            {
                header = primary;
                entries = primaryEntries;
                if (backup == null) table.Warnings.Add($"The backup GPT header is not valid ({backupProblem}); the primary is used");
                else if (backup.DiskGuid != primary.DiskGuid || backup.EntriesCrc != primary.EntriesCrc)
                    table.Warnings.Add("The backup GPT differs from the primary (disk GUID or partition entries); the primary is used");
            }
            else if (backup != null)
            {
                header = backup;
                entries = backupEntries;
                table.Warnings.Add($"The primary GPT is damaged ({primaryProblem}); the backup GPT at sector {backup.MyLba} is used");
            }
            else
            {
                table.Warnings.Add($"Neither GPT copy is valid: primary: {primaryProblem}; backup: {backupProblem}");
                table.Verified = false;
                return;
            }

            for (int i = 0; i < header.EntryCount; i++)
            {
                int o = (int)(i * header.EntryBytes);
                var type = new Guid(GptHeader.Slice(entries, o + GptHeader.EntryTypeField, 16));
                if (type == Guid.Empty) continue;
                long first = (long)GptHeader.U64(entries, o + GptHeader.EntryFirstLbaField);
                long last = (long)GptHeader.U64(entries, o + GptHeader.EntryLastLbaField);
                if (first < header.FirstUsableLba || last > header.LastUsableLba || last < first)
                {
                    table.Warnings.Add($"GPT partition {i + 1} (sectors {(ulong)first}..{(ulong)last}) lies outside the usable sectors {header.FirstUsableLba}..{header.LastUsableLba}; it is skipped");
                    table.Verified = false;
                    continue;
                }
                ulong attributes = GptHeader.U64(entries, o + GptHeader.EntryAttributesField);
                string name = Encoding.Unicode.GetString(entries, o + GptHeader.EntryNameField, GptHeader.EntryNameBytes);
                int nul = name.IndexOf('\0');
                if (nul >= 0) name = name.Substring(0, nul);
                table.Partitions.Add(new QcowPartition
                {
                    Table = PartitionTable.Gpt, Number = i + 1, Type = PartitionTypes.NameOf(type), TypeId = type.ToString().ToUpperInvariant(),
                    Name = name, Offset = first * Sector, Size = (last - first + 1) * Sector,
                    Guid = new Guid(GptHeader.Slice(entries, o + GptHeader.EntryGuidField, 16)).ToString().ToUpperInvariant(),
                    Attributes = attributes, Bootable = (attributes & 4) != 0, Kind = "Primary",
                });
            }
        }

        private GptHeader Load(long lba, out string problem, out byte[] entries)
        {
            entries = null;
            if (lba < 1 || lba >= _sectors) { problem = $"sector {lba} is outside the disk"; return null; }
            var header = GptHeader.Parse(ReadSectors(lba, 1), lba, _sectors, out problem);
            if (header == null) return null;
            var array = ReadSectors(header.EntriesLba, (int)((header.EntryArrayBytes + Sector - 1) / Sector));
            uint crc = Crc32.Ieee.Compute(array, 0, (int)header.EntryArrayBytes);
            if (crc != header.EntriesCrc)
            {
                problem = $"the partition entry array CRC32 {header.EntriesCrc:x8} does not match its contents ({crc:x8})";
                return null;
            }
            entries = array;
            return header;
        }

        private byte[] ReadSectors(long lba, int count)
        {
            var b = new byte[count * Sector];
            _disk.Read(lba * Sector, b, 0, b.Length);
            return b;
        }
    }
}
