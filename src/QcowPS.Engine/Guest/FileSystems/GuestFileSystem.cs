using System;
using System.Collections.Generic;
using static System.Buffers.Binary.BinaryPrimitives;

namespace QcowPS.Engine.Guest.FileSystems
{
    /// <summary>
    /// A file system found on a volume (a partition or the whole disk): what it is, how full its own
    /// counters say it is, and, for the ones understood well enough, which of its bytes are free.
    /// Each file system answers for itself; the base reads bytes of its volume only.
    /// </summary>
    public abstract class GuestFileSystem
    {
        protected GuestFileSystem(VirtualDisk disk, long offset, long length)
        {
            Disk = disk;
            Offset = offset;
            Length = length;
        }

        public VirtualDisk Disk { get; }
        /// <summary>Where the volume starts in the guest disk.</summary>
        public long Offset { get; }
        /// <summary>The size of the volume (partition) the file system sits in.</summary>
        public long Length { get; }

        /// <summary>blkid's TYPE: ext4, xfs, vfat, ntfs, swap, LVM2_member, ...</summary>
        public abstract string Type { get; }
        public string Label { get; protected set; }
        public string Uuid { get; protected set; }
        public long? Size { get; protected set; }
        public long? Used { get; protected set; }
        public long? Available { get; protected set; }
        public int? BlockSize { get; protected set; }

        /// <summary>
        /// Null when FreeRuns can be trusted to name only bytes no file uses; otherwise why not
        /// (not understood, dirty, journal needing recovery, errors, inconsistent maps).
        /// Checked again by FreeRuns, which throws rather than guess.
        /// </summary>
        public virtual string RefusalReason => $"QcowPS does not read the allocation map of {Type}";

        /// <summary>The free runs in ascending order, relative to Offset. Only call when RefusalReason is null.</summary>
        public virtual IEnumerable<FreeRun> FreeRuns() =>
            throw new QcowException(QcowErrorKind.Unsupported, Disk.Path, RefusalReason);

        /// <summary>Reads bytes of the volume; never outside it.</summary>
        protected void ReadVolume(long at, byte[] buffer, int index, int count)
        {
            if (at < 0 || count < 0 || at > Length - count)
                throw new QcowException(QcowErrorKind.Corrupt, Disk.Path,
                    $"The {Type} file system at offset {Offset} refers to bytes {at}..{at + count} outside its volume of {Length} bytes");
            Disk.Read(Offset + at, buffer, index, count);
        }

        protected byte[] ReadVolume(long at, int count)
        {
            var b = new byte[count];
            ReadVolume(at, b, 0, count);
            return b;
        }

        protected static ushort U16(byte[] b, int o) => ReadUInt16LittleEndian(new ReadOnlySpan<byte>(b, o, 2));
        protected static uint U32(byte[] b, int o) => ReadUInt32LittleEndian(new ReadOnlySpan<byte>(b, o, 4));
        protected static ulong U64(byte[] b, int o) => ReadUInt64LittleEndian(new ReadOnlySpan<byte>(b, o, 8));

        /// <summary>A label field: ASCII/UTF-8 up to the first NUL, trailing blanks trimmed; null when empty.</summary>
        protected static string Text(byte[] b, int o, int n)
        {
            int end = o;
            while (end < o + n && b[end] != 0) end++;
            string s = System.Text.Encoding.UTF8.GetString(b, o, end - o).TrimEnd(' ');
            return s.Length == 0 ? null : s;
        }

        /// <summary>A UUID as blkid prints it (lowercase, big-endian byte order as stored).</summary>
        protected static string UuidText(byte[] b, int o)
        {
            var hex = BitConverter.ToString(b, o, 16).Replace("-", "").ToLowerInvariant();
            return $"{hex.Substring(0, 8)}-{hex.Substring(8, 4)}-{hex.Substring(12, 4)}-{hex.Substring(16, 4)}-{hex.Substring(20)}";
        }

        /// <summary>Bit i of an allocation bitmap: bit i % 8 (least significant first) of byte i / 8, as ext2/3/4 and NTFS (clusters and index blocks) keep them.</summary>
        protected static bool BitIsSet(byte[] bitmap, long i) => (bitmap[i >> 3] & (1 << (int)(i & 7))) != 0;

        /// <summary>Runs of clear bits in a bitmap (BitIsSet's order), as (first, count) unit numbers.</summary>
        protected static IEnumerable<(long first, long count)> ClearBitRuns(byte[] bitmap, long units, long firstUnit)
        {
            long i = 0;
            while (i < units)
            {
                if (BitIsSet(bitmap, i)) { i++; continue; }
                long start = i;
                while (i < units && !BitIsSet(bitmap, i)) i++;
                yield return (firstUnit + start, i - start);
            }
        }

        protected static long CountClearBits(byte[] bitmap, long units)
        {
            long n = 0;
            foreach (var run in ClearBitRuns(bitmap, units, 0)) n += run.count;
            return n;
        }
    }
}
