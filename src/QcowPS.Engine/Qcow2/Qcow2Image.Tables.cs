using System;
using System.Collections.Generic;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    // Table-level views for Get-QcowCluster / Get-QcowTable and the checker.
    public sealed partial class Qcow2Image
    {
        /// <summary>
        /// Every guest cluster in [offset, offset+length) with its L2 entry; with allocatedOnly, ranges
        /// without an L2 table and unallocated entries are skipped (cheap on huge sparse images).
        /// </summary>
        /// <remarks>With a snapshot: its L1 table and disk size instead of the active ones.</remarks>
        public IEnumerable<ClusterDescriptor> EnumerateClusters(long offset, long length, bool allocatedOnly, Qcow2Snapshot snapshot = null)
        {
            int cb = ClusterBits;
            long cs = 1L << cb;
            long l2Entries = Header.L2Entries;
            ulong[] activeOrSnapshotL1 = L1Of(snapshot, out _);
            long diskLength = snapshot == null ? Length : (long)(snapshot.DiskSize ?? Header.Size);
            long end = Math.Min(diskLength, offset + length);
            long firstCluster = offset >> cb;
            long lastCluster = (end + cs - 1) >> cb;  // exclusive
            for (long ci = firstCluster; ci < lastCluster;)
            {
                long l1Index = ci / l2Entries;
                long tableLastCluster = Math.Min(lastCluster, (l1Index + 1) * l2Entries);
                byte[] table = null;
                long l2Offset;
                lock (_gate)
                {
                    ThrowIfDisposed();
                    ulong l1Entry = l1Index < activeOrSnapshotL1.Length ? activeOrSnapshotL1[l1Index] : 0;
                    l2Offset = L2OffsetOf(l1Entry, l1Index);
                    if (l2Offset != 0) table = (byte[])_l2Cache.Get(l2Offset).Clone();
                }
                if (table == null)
                {
                    if (!allocatedOnly)
                    {
                        for (; ci < tableLastCluster; ci++)
                            yield return new ClusterDescriptor
                            {
                                GuestOffset = ci << cb, L1Index = l1Index, L2Index = (int)(ci % l2Entries),
                                Type = ClusterType.Unallocated, HostOffset = -1,
                            };
                    }
                    ci = tableLastCluster;
                    continue;
                }
                for (; ci < tableLastCluster; ci++)
                {
                    int l2Index = (int)(ci - l1Index * l2Entries);
                    var e = ReadL2Entry(table, l2Index);
                    ValidateEntry(e, l2Offset, l2Index);
                    var type = e.Type;
                    if (Header.HasExtendedL2 && !e.IsCompressed)
                    {
                        // A cluster of an extended L2 table is "Normal" when any subcluster is allocated,
                        // "Zero" when all read as zeros, else unallocated.
                        uint allocated = (uint)e.Bitmap, zero = (uint)(e.Bitmap >> 32);
                        if (allocated != 0) type = ClusterType.Normal;
                        else if (zero == uint.MaxValue) type = e.HostOffset != 0 ? ClusterType.ZeroAllocated : ClusterType.Zero;
                        else if (zero != 0) type = ClusterType.Zero;
                    }
                    if (allocatedOnly && type == ClusterType.Unallocated && e.Raw == 0 && e.Bitmap == 0) continue;
                    var d = new ClusterDescriptor
                    {
                        GuestOffset = ci << cb, L1Index = l1Index, L2Index = l2Index, HasL2Entry = true,
                        Raw = e.Raw, Bitmap = e.Bitmap, Type = type, Copied = e.IsCopied, HostOffset = -1,
                    };
                    if (e.IsCompressed)
                    {
                        d.HostOffset = e.CompressedOffset;
                        d.CompressedSize = e.CompressedSize;
                        d.CompressedSectors = e.CompressedSectors;
                    }
                    else if (e.HostOffset != 0 || (Header.HasExternalDataFile && e.IsCopied))
                        d.HostOffset = e.HostOffset;
                    yield return d;
                }
            }
        }

        /// <summary>The active L1 table's entries, or a snapshot's.</summary>
        public IEnumerable<TableEntry> EnumerateL1(Qcow2Snapshot snapshot = null)
        {
            ulong[] l1 = L1Of(snapshot, out long storedAt);
            for (long i = 0; i < l1.Length; i++)
                yield return new TableEntry { Index = i, ParentIndex = -1, StoredAt = storedAt + i * 8, Value = l1[i] };
        }

        /// <summary>A copy of the active L1 table (snapshot null) or of a snapshot's, and where it is stored.</summary>
        private ulong[] L1Of(Qcow2Snapshot snapshot, out long storedAt)
        {
            lock (_gate)
            {
                ThrowIfDisposed();
                if (snapshot == null)
                {
                    storedAt = (long)Header.L1TableOffset;
                    return (ulong[])_l1.Clone();
                }
                storedAt = (long)snapshot.L1TableOffset;
                return ReadL1Table(snapshot.L1TableOffset, snapshot.L1Size, $"L1 table of snapshot '{snapshot.Name}'");
            }
        }

        /// <summary>Entries of the L2 tables the active L1 table (or a snapshot's) names (or only the one at l1Index).</summary>
        public IEnumerable<TableEntry> EnumerateL2(long? l1Index = null, Qcow2Snapshot snapshot = null)
        {
            ulong[] l1 = L1Of(snapshot, out _);
            int entrySize = Header.L2EntrySize;
            for (long i = l1Index ?? 0; i < (l1Index.HasValue ? Math.Min(l1.Length, l1Index.Value + 1) : l1.Length); i++)
            {
                long l2Offset = L2OffsetOf(l1[i], i);
                if (l2Offset == 0) continue;
                byte[] table;
                lock (_gate) table = (byte[])_l2Cache.Get(l2Offset).Clone();
                for (int j = 0; j < Header.L2Entries; j++)
                {
                    yield return new TableEntry
                    {
                        Index = j, ParentIndex = i, StoredAt = l2Offset + (long)j * entrySize,
                        Value = BigEndian.U64(table, j * entrySize),
                        Bitmap = entrySize == 16 ? BigEndian.U64(table, j * entrySize + 8) : 0,
                    };
                }
            }
        }

        public IEnumerable<TableEntry> EnumerateRefcountTable()
        {
            ulong[] rt;
            lock (_gate) rt = (ulong[])_refcountTable.Clone();
            for (long i = 0; i < rt.Length; i++)
                yield return new TableEntry { Index = i, ParentIndex = -1, StoredAt = (long)Header.RefcountTableOffset + i * 8, Value = rt[i] };
        }

        /// <summary>Refcounts of every refcount block (Value = refcount, Index = host cluster index).</summary>
        public IEnumerable<TableEntry> EnumerateRefcountBlocks(long? tableIndex = null)
        {
            ulong[] rt;
            lock (_gate) rt = (ulong[])_refcountTable.Clone();
            long perBlock = RefcountBlockEntries;
            int order = Header.RefcountOrder;
            for (long i = tableIndex ?? 0; i < (tableIndex.HasValue ? Math.Min(rt.Length, tableIndex.Value + 1) : rt.Length); i++)
            {
                long blockOffset;
                byte[] block;
                lock (_gate)
                {
                    blockOffset = RefcountBlockOffset(i);
                    if (blockOffset == 0) continue;
                    block = (byte[])_refcountCache.Get(blockOffset).Clone();
                }
                for (int j = 0; j < perBlock; j++)
                {
                    yield return new TableEntry
                    {
                        Index = i * perBlock + j, ParentIndex = i,
                        StoredAt = blockOffset + (((long)j << order) >> 3),
                        Value = ReadRefcountEntry(block, j, order),
                    };
                }
            }
        }
    }
}
