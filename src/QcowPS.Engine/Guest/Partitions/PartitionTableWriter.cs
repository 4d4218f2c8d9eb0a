using System;
using System.Collections.Generic;
using System.Text;

namespace QcowPS.Engine.Guest.Partitions
{
    /// <summary>
    /// Writes a new GPT or MBR partition table (guestfish part-disk, Initialize-Disk): by default one
    /// partition over the whole disk, else the partitions given, each starting on a 1 MiB boundary.
    /// Only the sectors of the tables are written, so it takes the same time on any size of disk.
    /// </summary>
    public static class PartitionTableWriter
    {
        private const int Sector = MbrReader.SectorSize;
        /// <summary>Partitions start on 1 MiB boundaries, as parted, sgdisk and Windows place them.</summary>
        public const long Alignment = 1 << 20;
        internal const long AlignmentSectors = Alignment / Sector;

        /// <summary>
        /// Why the disk must not be partitioned without -Force (it has a partition table, or a file
        /// system on the whole disk), or null when it looks empty.
        /// </summary>
        public static string ExistingContent(VirtualDisk disk)
        {
            var table = PartitionTableReader.Read(disk);
            if (table.Style != PartitionTable.None)
                return $"it already has {(table.Style == PartitionTable.Gpt ? "a GPT" : "an MBR")} partition table with {table.Partitions.Count} partition(s)";
            if (disk.Length >= Sector)
            {
                var first = new byte[Sector];
                disk.Read(0, first, 0, Sector);
                if (first[MbrReader.SignatureOffset] == 0x55 && first[MbrReader.SignatureOffset + 1] == 0xAA) return "sector 0 carries a boot signature (55 AA)";
            }
            var fs = FileSystems.FileSystemProbe.Probe(disk, 0, disk.Length);
            if (fs != null) return $"it holds a {fs.Type} file system on the whole disk";
            return null;
        }

        /// <summary>Where each partition would go: (first sector, sector count, spec), checked against the disk and the style's limits.</summary>
        public static List<(long first, long count, PartitionSpec spec)> Layout(long diskLength, string style, IList<PartitionSpec> specs, string path)
        {
            bool gpt = IsGpt(style, path);
            long sectors = diskLength / Sector;
            if (specs == null || specs.Count == 0) specs = new[] { new PartitionSpec() };
            long firstUsable = gpt ? GptWriter.FirstUsableLba : 1;
            long lastUsable = gpt ? GptWriter.LastUsableLba(sectors) : sectors - 1;
            if (sectors < AlignmentSectors + (gpt ? GptWriter.TableSectors + 1 : 0) + 1 || lastUsable < AlignmentSectors)
                throw Argument(path, $"The disk of {diskLength} bytes is too small for a {style} partition table with a partition aligned to 1 MiB");
            if (!gpt && specs.Count > MbrWriter.MaxPartitions)
                throw Argument(path, $"An MBR holds at most {MbrWriter.MaxPartitions} partitions ({MbrWriter.PrimariesBesideExtended} primary and {MbrWriter.MaxPartitions - MbrWriter.PrimariesBesideExtended} logical, numbered up to {MbrWriter.MaxPartitionNumber} as fdisk and sfdisk allow); {specs.Count} were given: use -Style Gpt");
            if (gpt && specs.Count > GptWriter.EntryCount)
                throw Argument(path, $"A GPT written by QcowPS holds at most {GptWriter.EntryCount} partitions ({specs.Count} were given)");

            var layout = new List<(long, long, PartitionSpec)>();
            long next = AlignUp(Math.Max(firstUsable, AlignmentSectors));
            for (int i = 0; i < specs.Count; i++)
            {
                var spec = specs[i];
                bool logical = !gpt && MbrWriter.IsLogical(i, specs.Count);
                // The name the user's i-th hashtable goes by: its place in the list, and the number a logical partition gets (5, 6, ...).
                string label = logical ? $"Partition {i + 1} (logical partition {MbrWriter.LogicalNumber(i)})" : $"Partition {i + 1}";
                if (logical) next = MbrWriter.LogicalStartAfterEbr(next);
                if (next > lastUsable)
                    throw Argument(path, $"{label} does not fit: the disk's usable sectors end at {lastUsable} and it would start at sector {next}");
                long count;
                if (spec.Size == null)
                {
                    if (i != specs.Count - 1) throw Argument(path, $"{label} has no Size: only the last partition may take the rest of the disk");
                    // The rest of the disk, ending on a 1 MiB boundary (whole MiB partitions suit file systems and image clusters).
                    long end = AlignDown(lastUsable + 1);
                    count = end > next ? end - next : lastUsable + 1 - next;
                }
                else
                {
                    long size = spec.Size.Value;
                    if (size <= 0 || size % Sector != 0) throw Argument(path, $"{label}: Size {size} is not a positive multiple of {Sector} bytes");
                    count = size / Sector;
                    if (count > lastUsable + 1 - next)
                        throw Argument(path, $"{label} of {size} bytes does not fit: {(lastUsable + 1 - next) * Sector} bytes are left from offset {next * Sector}");
                }
                if (!gpt && (next + count > MbrWriter.MaxSectors))
                    throw Argument(path, $"MBR partitions cannot reach past 2 TiB ({MbrWriter.MaxSectors} sectors of 512 bytes), and {label} would end at byte {(next + count) * Sector} of this {diskLength}-byte disk: use -Style Gpt");
                CheckTypeAndName(spec, gpt, label, path);
                layout.Add((next, count, spec));
                next = AlignUp(next + count);
            }
            return layout;
        }

        /// <summary>Writes the table (after Layout's checks). Existing content must have been checked by the caller (ExistingContent).</summary>
        public static void Write(VirtualDisk disk, string style, IList<PartitionSpec> specs)
        {
            var layout = Layout(disk.Length, style, specs, disk.Path);
            if (IsGpt(style, disk.Path)) new GptWriter(disk).Write(layout);
            else new MbrWriter(disk).Write(layout);
            disk.Flush();
        }

        internal static bool IsGpt(string style, string path)
        {
            if (string.Equals(style, PartitionTable.Gpt, StringComparison.OrdinalIgnoreCase)) return true;
            if (string.Equals(style, PartitionTable.Mbr, StringComparison.OrdinalIgnoreCase)) return false;
            throw Argument(path, $"Partition table style '{style}' is not Gpt or Mbr");
        }

        private static void CheckTypeAndName(PartitionSpec spec, bool gpt, string label, string path)
        {
            if (spec.Type != null)
            {
                bool known = gpt ? PartitionTypes.GptTypeFrom(spec.Type) != null : PartitionTypes.MbrTypeFrom(spec.Type) != null;
                if (!known) throw Argument(path, $"{label}: Type '{spec.Type}' is not {(gpt ? "a GPT type GUID or a known GPT type name" : "an MBR type byte (hex) or a known MBR type name")}");
                if (!gpt && (PartitionTypes.IsExtended(PartitionTypes.MbrTypeFrom(spec.Type).Value) || PartitionTypes.MbrTypeFrom(spec.Type) == 0 || PartitionTypes.MbrTypeFrom(spec.Type) == PartitionTypes.GptProtective))
                    throw Argument(path, $"{label}: MBR type {spec.Type} (empty, extended or GPT protective) cannot be given to a partition");
            }
            if (spec.Name != null)
            {
                if (!gpt) throw Argument(path, $"{label}: MBR partitions have no Name");
                if (Encoding.Unicode.GetByteCount(spec.Name) > GptHeader.EntryNameBytes)
                    throw Argument(path, $"{label}: Name '{spec.Name}' is longer than a GPT name's 36 UTF-16 code units");
            }
        }

        private static long AlignUp(long lba) => (lba + AlignmentSectors - 1) / AlignmentSectors * AlignmentSectors;
        private static long AlignDown(long lba) => lba / AlignmentSectors * AlignmentSectors;

        private static QcowException Argument(string path, string message) => new QcowException(QcowErrorKind.InvalidArgument, path, message);
    }
}
