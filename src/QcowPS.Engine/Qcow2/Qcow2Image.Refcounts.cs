using System;
using System.Collections.Generic;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    // Host cluster reference counts (QEMU: block/qcow2-refcount.c).
    public sealed partial class Qcow2Image
    {
        /// <summary>Lowest host cluster index that may be free (QEMU's free_cluster_index).</summary>
        private long _freeClusterHint;

        /// <summary>Clusters chosen for an allocation in progress, so nested allocations skip them.</summary>
        private readonly HashSet<long> _reservedClusters = new HashSet<long>();

        /// <summary>During repair: clusters the rebuilt counts say are in use, whatever the disk says.</summary>
        internal Func<long, bool> InUseOverride { get; set; }

        /// <summary>During repair: told of every cluster allocated, so the rebuilt counts include it.</summary>
        internal Action<long, int> AllocationObserver { get; set; }

        /// <summary>
        /// Refcount decrements waiting until the metadata that dropped the references is durable
        /// (host cluster index, count). Applied in step 5 of FlushMetadata, so a freed cluster is
        /// never reused while a durable table still points at it.
        /// </summary>
        private readonly List<KeyValuePair<long, long>> _pendingFrees = new List<KeyValuePair<long, long>>();

        private bool _refcountTableDirty;
        /// <summary>Where a grown refcount table will be written (0: in place).</summary>
        private long _newRefcountTableOffset;
        private long _oldRefcountTableOffset;
        private int _oldRefcountTableClusters;

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
    
        // ---- Allocation and refcount updates (write side) ------------------------------------------

        private bool IsClusterFree(long index)
        {
            if (_reservedClusters.Contains(index)) return false;
            if (InUseOverride != null && InUseOverride(index)) return false;
            return GetRefcountLocked(index) == 0;
        }

        /// <summary>Finds count contiguous free host clusters (not yet counted) and reserves them.</summary>
        private long FindFreeClusters(int count)
        {
            long start = _freeClusterHint;
            long run = 0;
            long perBlock = RefcountBlockEntries;
            for (long index = start; ; index++)
            {
                // Past the refcount table's reach everything is free: jump there instead of probing one by one.
                if (run == 0 && index / perBlock >= _refcountTable.Length && _reservedClusters.Count == 0 && InUseOverride == null)
                {
                    start = index;
                    run = count;
                    break;
                }
                if (IsClusterFree(index))
                {
                    if (run == 0) start = index;
                    if (++run == count) break;
                }
                else run = 0;
            }
            for (long i = 0; i < count; i++) _reservedClusters.Add(start + i);
            AllocationObserver?.Invoke(start, count);
            return start;
        }

        /// <summary>Allocates count contiguous clusters with refcount 1; returns the host offset.</summary>
        internal long AllocateClusters(int count)
        {
            long start = FindFreeClusters(count);
            try
            {
                for (long i = 0; i < count; i++) ChangeRefcount(start + i, +1);
            }
            finally
            {
                for (long i = 0; i < count; i++) _reservedClusters.Remove(start + i);
            }
            if (start == _freeClusterHint) _freeClusterHint = start + count;
            return start << ClusterBits;
        }

        /// <summary>Schedules a decrement for after the next metadata flush (see _pendingFrees).</summary>
        internal void FreeClustersLater(long hostOffset, long bytes)
        {
            long first = hostOffset >> ClusterBits;
            long last = (hostOffset + bytes - 1) >> ClusterBits;
            for (long c = first; c <= last; c++) _pendingFrees.Add(new KeyValuePair<long, long>(c, 1));
        }

        /// <summary>Frees the host clusters a compressed entry's sector range touches (one user each).</summary>
        internal void FreeCompressedLater(L2Entry e)
        {
            long start = e.CompressedOffset & ~511L;
            FreeClustersLater(start, (long)e.CompressedSectors * 512);
        }

        /// <summary>Applies a refcount change now, in the cache (creating refcount blocks as needed).</summary>
        internal void ChangeRefcount(long clusterIndex, long delta)
        {
            long perBlock = RefcountBlockEntries;
            long tableIndex = clusterIndex / perBlock;
            if (tableIndex >= _refcountTable.Length) GrowRefcountTable(tableIndex);
            long blockOffset = RefcountBlockOffset(tableIndex);
            if (blockOffset == 0) blockOffset = CreateRefcountBlock(tableIndex);
            var block = _refcountCache.Get(blockOffset);
            int index = (int)(clusterIndex % perBlock);
            ulong value = ReadRefcountEntry(block, index, Header.RefcountOrder);
            ulong updated;
            if (delta < 0)
            {
                if (value < (ulong)(-delta))
                    throw QcowException.Corrupt(Path, $"Refcount of host cluster {clusterIndex} would drop below zero (it is {value}); the image needs Repair-QcowImage");
                updated = value - (ulong)(-delta);
            }
            else
            {
                if (MaxRefcount - value < (ulong)delta)
                    throw new RefcountOverflowException(clusterIndex);
                updated = value + (ulong)delta;
            }
            WriteRefcountEntry(block, index, Header.RefcountOrder, updated);
            _refcountCache.MarkDirty(blockOffset, block);
            if (updated == 0 && clusterIndex < _freeClusterHint) _freeClusterHint = clusterIndex;
        }

        /// <summary>Sets a refcount to an exact value (repair).</summary>
        internal void SetRefcount(long clusterIndex, ulong value)
        {
            ulong current = GetRefcountLocked(clusterIndex);
            if (current == value) return;
            if (value > MaxRefcount)
                throw new QcowException(QcowErrorKind.Unsupported, Path, $"Host cluster {clusterIndex} needs refcount {value}, above the {Header.RefcountBits}-bit maximum");
            if (value > current) ChangeRefcount(clusterIndex, (long)(value - current));
            else ChangeRefcount(clusterIndex, -(long)(current - value));
        }

        /// <summary>Whether one more reference fits in the refcount width.</summary>
        internal bool CanAddReference(long clusterIndex) => GetRefcountLocked(clusterIndex) < MaxRefcount;

        /// <summary>
        /// A new refcount block for the table slot, placed (like QEMU) in the first free cluster; when
        /// that cluster lies in the range the block itself covers, the block counts itself.
        /// </summary>
        private long CreateRefcountBlock(long tableIndex)
        {
            long perBlock = RefcountBlockEntries;
            long blockIndex = FindFreeClusters(1);
            long blockOffset = blockIndex << ClusterBits;
            try
            {
                var block = _refcountCache.Create(blockOffset);
                if (blockIndex / perBlock == tableIndex)
                {
                    _refcountTable[tableIndex] = (ulong)blockOffset;
                    _refcountTableDirty = true;
                    WriteRefcountEntry(block, (int)(blockIndex % perBlock), Header.RefcountOrder, 1);
                }
                else
                {
                    // Counted by another block (which may itself be created by this call).
                    _refcountTable[tableIndex] = (ulong)blockOffset;
                    _refcountTableDirty = true;
                    ChangeRefcount(blockIndex, +1);
                }
            }
            finally
            {
                _reservedClusters.Remove(blockIndex);
            }
            return blockOffset;
        }

        /// <summary>
        /// Makes the refcount table reach tableIndex: a new, larger table is built in memory and
        /// placed in free clusters at the end; FlushMetadata writes it after the blocks it points to,
        /// then switches the header to it and frees the old one (QEMU: qcow2_refcount_area).
        /// </summary>
        private void GrowRefcountTable(long tableIndex)
        {
            int cs = ClusterSize;
            long perBlock = RefcountBlockEntries;
            long oldEntries = _refcountTable.Length;
            long entries = Math.Max(tableIndex + 1, oldEntries + oldEntries / 2);
            long entriesPerCluster = cs / 8;
            entries = (entries + entriesPerCluster - 1) / entriesPerCluster * entriesPerCluster;
            long endCluster = Math.Max(_file.Length >> ClusterBits, _freeClusterHint);
            while (true)
            {
                long tableClusters = entries / entriesPerCluster;
                // The table and the blocks describing it are allocated past the end: make sure they are covered.
                long needCovered = endCluster + tableClusters + (entries - oldEntries) + 16;
                if (entries * perBlock > needCovered && entries > tableIndex) break;
                entries += entriesPerCluster;
            }
            if (entries * 8 > Qcow2Header.MaxRefcountTableBytes)
                throw new QcowException(QcowErrorKind.Unsupported, Path,
                    $"The refcount table would exceed QEMU's limit of {Qcow2Header.MaxRefcountTableBytes} bytes; use a larger cluster size");

            if (_newRefcountTableOffset == 0)
            {
                _oldRefcountTableOffset = (long)Header.RefcountTableOffset;
                _oldRefcountTableClusters = (int)Header.RefcountTableClusters;
            }
            else
            {
                // Grown twice before a flush: the intermediate table was never written; free it.
                FreeClustersLater(_newRefcountTableOffset, _refcountTable.Length * 8L);
            }
            var grown = new ulong[entries];
            Array.Copy(_refcountTable, grown, _refcountTable.Length);
            _refcountTable = grown;
            int clusters = (int)(entries * 8 / cs);
            _newRefcountTableOffset = AllocateClusters(clusters);
            _refcountTableDirty = true;
        }

        /// <summary>Writes dirty refcount blocks, then the refcount table (moving it if it grew).</summary>
        private void WriteRefcountMetadata()
        {
            var dirty = _refcountCache.DirtyTables();
            foreach (var t in dirty) _file.WriteAt(t.Key, t.Value, 0, t.Value.Length);
            if (dirty.Count > 0) SyncFile();
            foreach (var t in dirty) _refcountCache.MarkClean(t.Key);
            if (!_refcountTableDirty) return;

            long tableOffset = _newRefcountTableOffset != 0 ? _newRefcountTableOffset : (long)Header.RefcountTableOffset;
            var bytes = new byte[_refcountTable.Length * 8];
            for (int i = 0; i < _refcountTable.Length; i++) BigEndian.Put64(bytes, i * 8, _refcountTable[i]);
            _file.WriteAt(tableOffset, bytes, 0, bytes.Length);
            SyncFile();
            if (_newRefcountTableOffset != 0)
            {
                Header.RefcountTableOffset = (ulong)_newRefcountTableOffset;
                Header.RefcountTableClusters = (uint)(bytes.Length / ClusterSize);
                WriteHeader();
                FreeClustersLater(_oldRefcountTableOffset, (long)_oldRefcountTableClusters * ClusterSize);
                _newRefcountTableOffset = 0;
            }
            _refcountTableDirty = false;
        }
    }

}
