using System;
using System.Collections.Generic;
using System.Text;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    /// <summary>One entry of the snapshot table (spec: "Snapshots").</summary>
    public sealed class Qcow2Snapshot
    {
        public const int MaxExtraData = 1024;   // QCOW_MAX_SNAPSHOT_EXTRA_DATA
        public const int FixedSize = 40;

        public long L1TableOffset { get; set; }
        public uint L1Size { get; set; }
        public string Id { get; set; }
        public string Name { get; set; }
        public uint DateSeconds { get; set; }
        public uint DateNanoseconds { get; set; }
        public ulong VmClockNanoseconds { get; set; }
        /// <summary>VM state size: the 64-bit extra-data field when present, else the 32-bit one.</summary>
        public ulong VmStateSize { get; set; }
        /// <summary>Virtual disk size at snapshot time (extra data bytes 48-55), or null when absent.</summary>
        public ulong? DiskSize { get; set; }
        /// <summary>icount at snapshot time (-1 when disabled), or null when absent.</summary>
        public long? Icount { get; set; }
        /// <summary>The extra data as stored (known fields and any unknown ones, kept when rewriting).</summary>
        public byte[] ExtraData { get; set; } = Array.Empty<byte>();

        public DateTime Date => DateTimeOffset.FromUnixTimeSeconds(DateSeconds).UtcDateTime.AddTicks(DateNanoseconds / 100);

        public TimeSpan VmClock => TimeSpan.FromTicks((long)(VmClockNanoseconds / 100));

        /// <summary>Bytes this entry takes in the table, padded to 8.</summary>
        public int EntrySize
        {
            get
            {
                int size = FixedSize + ExtraData.Length + Encoding.UTF8.GetByteCount(Id) + Encoding.UTF8.GetByteCount(Name);
                return (size + 7) & ~7;
            }
        }

        /// <summary>Parses the whole table, checking every count and length against the file first.</summary>
        internal static List<Qcow2Snapshot> ReadTable(IHostFile file, Qcow2Header header)
        {
            var list = new List<Qcow2Snapshot>();
            if (header.SnapshotCount == 0) return list;
            string path = file.Path;
            long offset = (long)header.SnapshotsOffset;
            // The table is at most 64 MiB (QEMU's QCOW_MAX_SNAPSHOTS_SIZE) and must lie in the file, so the
            // read below is bounded by the file's own size.
            long available = Math.Min(file.Length - offset, Qcow2Header.MaxSnapshotTableBytes);
            long maxEntry = FixedSize + MaxExtraData + 2 * 65535 + 7;
            long toRead = Math.Min(available, (long)header.SnapshotCount * maxEntry);
            var table = new byte[toRead];
            int got = file.ReadAt(offset, table, 0, table.Length);
            int pos = 0;
            for (int i = 0; i < header.SnapshotCount; i++)
            {
                if (pos + FixedSize > got)
                    throw QcowException.Corrupt(path, $"Snapshot table entry {i} of {header.SnapshotCount} runs past the end of the table or file (offset 0x{offset + pos:X})");
                var s = new Qcow2Snapshot
                {
                    L1TableOffset = (long)BigEndian.U64(table, pos),
                    L1Size = BigEndian.U32(table, pos + 8),
                    DateSeconds = BigEndian.U32(table, pos + 16),
                    DateNanoseconds = BigEndian.U32(table, pos + 20),
                    VmClockNanoseconds = BigEndian.U64(table, pos + 24),
                    VmStateSize = BigEndian.U32(table, pos + 32),
                };
                int idLength = BigEndian.U16(table, pos + 12);
                int nameLength = BigEndian.U16(table, pos + 14);
                uint extraLength = BigEndian.U32(table, pos + 36);
                if (extraLength > MaxExtraData)
                    throw QcowException.Corrupt(path, $"Snapshot table entry {i} has {extraLength} bytes of extra data; at most {MaxExtraData} are allowed");
                long entryEnd = pos + FixedSize + extraLength + idLength + nameLength;
                if (entryEnd > got)
                    throw QcowException.Corrupt(path, $"Snapshot table entry {i} of {header.SnapshotCount} runs past the end of the table or file (offset 0x{offset + pos:X})");
                int p = pos + FixedSize;
                s.ExtraData = new byte[extraLength];
                Array.Copy(table, p, s.ExtraData, 0, (int)extraLength);
                if (extraLength >= 8) s.VmStateSize = BigEndian.U64(table, p);
                if (extraLength >= 16) s.DiskSize = BigEndian.U64(table, p + 8);
                if (extraLength >= 24) s.Icount = (long)BigEndian.U64(table, p + 16);
                p += (int)extraLength;
                s.Id = Encoding.UTF8.GetString(table, p, idLength);
                p += idLength;
                s.Name = Encoding.UTF8.GetString(table, p, nameLength);
                pos = (int)((entryEnd + 7) & ~7L);

                if (s.L1Size > Qcow2Header.MaxL1Bytes / 8)
                    throw QcowException.Corrupt(path, $"Snapshot '{s.Name}' (id {s.Id}) has an L1 table of {s.L1Size} entries, above QEMU's limit of {Qcow2Header.MaxL1Bytes / 8}");
                if (s.L1TableOffset % header.ClusterSize != 0)
                    throw QcowException.Corrupt(path, $"Snapshot '{s.Name}' (id {s.Id}) has an unaligned L1 table offset 0x{s.L1TableOffset:X}");
                if (s.DiskSize.HasValue && s.DiskSize.Value > Qcow2Header.MaxVirtualSize)
                    throw QcowException.Corrupt(path, $"Snapshot '{s.Name}' (id {s.Id}) has an impossible disk size {s.DiskSize}");
                list.Add(s);
            }
            return list;
        }

        /// <summary>The table bytes for a list of snapshots (v3 entries always carry disk size and icount).</summary>
        internal static byte[] SerializeTable(IList<Qcow2Snapshot> snapshots)
        {
            int total = 0;
            foreach (var s in snapshots) total += s.EntrySize;
            var table = new byte[total];
            int pos = 0;
            foreach (var s in snapshots)
            {
                var id = Encoding.UTF8.GetBytes(s.Id);
                var name = Encoding.UTF8.GetBytes(s.Name);
                if (id.Length > 65535 || name.Length > 65535)
                    throw new QcowException(QcowErrorKind.InvalidArgument, "A snapshot ID or name is longer than 65535 bytes");
                BigEndian.Put64(table, pos, (ulong)s.L1TableOffset);
                BigEndian.Put32(table, pos + 8, s.L1Size);
                BigEndian.Put16(table, pos + 12, (ushort)id.Length);
                BigEndian.Put16(table, pos + 14, (ushort)name.Length);
                BigEndian.Put32(table, pos + 16, s.DateSeconds);
                BigEndian.Put32(table, pos + 20, s.DateNanoseconds);
                BigEndian.Put64(table, pos + 24, s.VmClockNanoseconds);
                BigEndian.Put32(table, pos + 32, (uint)Math.Min(s.VmStateSize, uint.MaxValue));
                BigEndian.Put32(table, pos + 36, (uint)s.ExtraData.Length);
                int p = pos + FixedSize;
                Array.Copy(s.ExtraData, 0, table, p, s.ExtraData.Length);
                p += s.ExtraData.Length;
                Array.Copy(id, 0, table, p, id.Length);
                p += id.Length;
                Array.Copy(name, 0, table, p, name.Length);
                pos += s.EntrySize;
            }
            return table;
        }

        /// <summary>Extra data with the fields QEMU writes today: VM state size, disk size, icount.</summary>
        internal static byte[] StandardExtraData(ulong vmStateSize, ulong diskSize, long icount)
        {
            var extra = new byte[24];
            BigEndian.Put64(extra, 0, vmStateSize);
            BigEndian.Put64(extra, 8, diskSize);
            BigEndian.Put64(extra, 16, (ulong)icount);
            return extra;
        }
    }
}
