using System;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    // Host cluster reference counts (QEMU: block/qcow2-refcount.c).
    public sealed partial class Qcow2Image
    {
        /// <summary>Refcount entries in one refcount block.</summary>
        internal long RefcountBlockEntries => ((long)ClusterSize * 8) >> Header.RefcountOrder;

        internal ulong MaxRefcount => Header.RefcountOrder == 6 ? ulong.MaxValue : (1UL << Header.RefcountBits) - 1;

        private byte[] LoadRefcountBlock(long offset, byte[] buffer)
        {
            if (offset <= 0 || (offset & (ClusterSize - 1)) != 0)
                throw QcowException.Corrupt(Path, $"Refcount block offset 0x{offset:X} is not a valid cluster offset");
            _file.ReadExactly(offset, buffer, 0, ClusterSize, "refcount block");
            return buffer;
        }

        /// <summary>Entries of the refcount table (a copy).</summary>
        public ulong[] GetRefcountTable()
        {
            lock (_gate) return (ulong[])_refcountTable.Clone();
        }

        /// <summary>The refcount of the host cluster with this index (0 where no refcount block covers it).</summary>
        public ulong GetRefcount(long hostClusterIndex)
        {
            lock (_gate) return GetRefcountLocked(hostClusterIndex);
        }

        private ulong GetRefcountLocked(long hostClusterIndex)
        {
            long perBlock = RefcountBlockEntries;
            long tableIndex = hostClusterIndex / perBlock;
            if (tableIndex >= _refcountTable.Length) return 0;
            long blockOffset = RefcountBlockOffset(tableIndex);
            if (blockOffset == 0) return 0;
            var block = _refcountCache.Get(blockOffset);
            return ReadRefcountEntry(block, (int)(hostClusterIndex % perBlock), Header.RefcountOrder);
        }

        private long RefcountBlockOffset(long tableIndex)
        {
            long offset = (long)(_refcountTable[tableIndex] & RefcountTableOffsetMask);
            if ((offset & (ClusterSize - 1)) != 0)
                throw QcowException.Corrupt(Path, $"Refcount table entry {tableIndex} points to an unaligned refcount block offset 0x{offset:X}");
            return offset;
        }

        /// <summary>Reads entry i of a refcount block at a width of 2^order bits (sub-byte widths: bit 0 is the LSB).</summary>
        internal static ulong ReadRefcountEntry(byte[] block, int index, int order)
        {
            switch (order)
            {
                case 0: return (ulong)((block[index >> 3] >> (index & 7)) & 1);
                case 1: return (ulong)((block[index >> 2] >> (2 * (index & 3))) & 3);
                case 2: return (ulong)((block[index >> 1] >> (4 * (index & 1))) & 15);
                case 3: return block[index];
                case 4: return BigEndian.U16(block, index * 2);
                case 5: return BigEndian.U32(block, index * 4);
                default: return BigEndian.U64(block, index * 8);
            }
        }

        internal static void WriteRefcountEntry(byte[] block, int index, int order, ulong value)
        {
            switch (order)
            {
                case 0:
                {
                    int shift = index & 7;
                    block[index >> 3] = (byte)((block[index >> 3] & ~(1 << shift)) | ((int)(value & 1) << shift));
                    break;
                }
                case 1:
                {
                    int shift = 2 * (index & 3);
                    block[index >> 2] = (byte)((block[index >> 2] & ~(3 << shift)) | ((int)(value & 3) << shift));
                    break;
                }
                case 2:
                {
                    int shift = 4 * (index & 1);
                    block[index >> 1] = (byte)((block[index >> 1] & ~(15 << shift)) | ((int)(value & 15) << shift));
                    break;
                }
                case 3: block[index] = (byte)value; break;
                case 4: BigEndian.Put16(block, index * 2, (ushort)value); break;
                case 5: BigEndian.Put32(block, index * 4, (uint)value); break;
                default: BigEndian.Put64(block, index * 8, value); break;
            }
        }
    }
}
