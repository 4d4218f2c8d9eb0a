using System;
using System.Collections.Generic;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    // The guest write path: allocation, copy on write, subclusters and zeroing (QEMU:
    // qcow2_co_pwritev_part, qcow2_alloc_cluster_offset, handle_copied, handle_alloc,
    // zero_in_l2_slice). Data goes straight to the file; the metadata it changes stays dirty in memory
    // until FlushMetadata writes it in the crash-safe order described in Qcow2Image.Flush.cs.
    public sealed partial class Qcow2Image
    {
        // Copy on write: one cluster's old content, reused across writes.
        private byte[] _cowBuffer;

        public override void Write(long offset, byte[] buffer, int index, int count)
        {
            CheckRange(offset, count);
            lock (_gate)
            {
                ThrowIfReadOnly();
                MarkBitmapsDirty(offset, count);
                int cs = ClusterSize;
                while (count > 0)
                {
                    int inCluster = (int)(offset & (cs - 1));
                    int n = Math.Min(count, cs - inCluster);
                    WriteInCluster(offset - inCluster, inCluster, buffer, index, n, zero: false);
                    offset += n;
                    index += n;
                    count -= n;
                }
            }
        }

        public override void WriteZeroes(long offset, long length)
        {
            CheckRange(offset, length);
            lock (_gate)
            {
                ThrowIfReadOnly();
                MarkBitmapsDirty(offset, length);
                int cs = ClusterSize;
                while (length > 0)
                {
                    int inCluster = (int)(offset & (cs - 1));
                    int n = (int)Math.Min(length, cs - inCluster);
                    if (inCluster == 0 && n == cs && ZeroWholeCluster(offset)) { }
                    else if (Header.HasExtendedL2 && ZeroSubclusters(offset - inCluster, inCluster, n)) { }
                    else WriteInCluster(offset - inCluster, inCluster, null, 0, n, zero: true);
                    offset += n;
                    length -= n;
                }
            }
        }

        /// <summary>Whether anything below this image could show through an unallocated cluster.</summary>
        private bool HasBackingData(long guestOffset) => Backing != null && guestOffset < Backing.Length;

        /// <summary>
        /// Returns the L2 table for a guest cluster, ready to be modified: allocated if missing, copied
        /// if shared with a snapshot (its L1 entry has no COPIED flag).
        /// </summary>
        private (byte[] table, long l2Offset) L2TableForWrite(long l1Index)
        {
            if (l1Index >= _l1.Length)
                throw new QcowException(QcowErrorKind.InvalidArgument, Path, $"L1 index {l1Index} is beyond the L1 table");
            ulong l1Entry = _l1[l1Index];
            long l2Offset = L2OffsetOf(l1Entry, l1Index);
            if (l2Offset == 0)
            {
                l2Offset = AllocateClusters(1);
                var fresh = _l2Cache.Create(l2Offset);
                _l1[l1Index] = (ulong)l2Offset | L2Entry.CopiedFlag;
                _l1Dirty = true;
                return (fresh, l2Offset);
            }
            var table = _l2Cache.Get(l2Offset);
            if ((l1Entry & L2Entry.CopiedFlag) != 0) return (table, l2Offset);

            if (GetRefcountLocked(l2Offset >> ClusterBits) == 1)
            {
                _l1[l1Index] = l1Entry | L2Entry.CopiedFlag;
                _l1Dirty = true;
                return (table, l2Offset);
            }
            // Shared with a snapshot: the active view gets its own copy; the data clusters keep their counts.
            long copyOffset = AllocateClusters(1);
            var copy = _l2Cache.Create(copyOffset, table);
            FreeClustersLater(l2Offset, ClusterSize);
            _l1[l1Index] = (ulong)copyOffset | L2Entry.CopiedFlag;
            _l1Dirty = true;
            return (copy, copyOffset);
        }

        /// <summary>The writable L2 table holding a guest cluster's entry, the entry's index, and the entry (validated).</summary>
        private (byte[] table, long l2Offset, int l2Index, L2Entry entry) EntryForWrite(long clusterOffset)
        {
            long clusterIndex = clusterOffset >> ClusterBits;
            int l2Index = (int)(clusterIndex % Header.L2Entries);
            var (table, l2Offset) = L2TableForWrite(clusterIndex / Header.L2Entries);
            var entry = ReadL2Entry(table, l2Index);
            ValidateEntry(entry, l2Offset, l2Index);
            return (table, l2Offset, l2Index, entry);
        }

        private void SetL2Entry(byte[] table, long l2Offset, int l2Index, ulong raw, ulong bitmap)
        {
            if (Header.HasExtendedL2)
            {
                BigEndian.Put64(table, l2Index * 16, raw);
                BigEndian.Put64(table, l2Index * 16 + 8, bitmap);
            }
            else BigEndian.Put64(table, l2Index * 8, raw);
            _l2Cache.MarkDirty(l2Offset, table);
        }

        /// <summary>Drops the old reference of an entry being replaced (after the next metadata flush).</summary>
        private void ReleaseEntry(L2Entry e)
        {
            if (e.IsCompressed) FreeCompressedLater(e);
            else if (e.HostOffset != 0 && !Header.HasExternalDataFile) FreeClustersLater(e.HostOffset, ClusterSize);
        }

        /// <summary>Reads the current content of a guest cluster (for copy on write), whatever backs it.</summary>
        private void ReadClusterForCow(long clusterOffset, L2Entry e, byte[] target)
        {
            int cs = ClusterSize;
            int length = (int)Math.Min(cs, Length - clusterOffset);
            if (length < cs) Array.Clear(target, length, cs - length);
            if (e.IsCompressed)
            {
                Array.Copy(DecompressCluster(e.Raw, clusterOffset), target, cs);
                return;
            }
            // Per run, as the mapping sees it (subclusters included): data, zeros or the backing file.
            for (long pos = clusterOffset; pos < clusterOffset + length;)
            {
                var ext = Map(_l1, pos, clusterOffset + length - pos);
                int n = (int)ext.Length;
                int at = (int)(pos - clusterOffset);
                switch (ext.Type)
                {
                    case ClusterType.Normal:
                        _dataFile.ReadOrZero(ext.HostOffset, target, at, n);
                        break;
                    case ClusterType.Zero:
                    case ClusterType.ZeroAllocated:
                        Array.Clear(target, at, n);
                        break;
                    default:
                        ReadBacking(pos, target, at, n);
                        break;
                }
                pos += n;
            }
        }

        /// <summary>Writes count bytes (or zeros) at inCluster within one guest cluster.</summary>
        private void WriteInCluster(long clusterOffset, int inCluster, byte[] data, int index, int count, bool zero)
        {
            int cs = ClusterSize;
            var (table, l2Offset, l2Index, e) = EntryForWrite(clusterOffset);

            bool inPlace = !e.IsCompressed && e.IsCopied && (e.HostOffset != 0 || Header.HasExternalDataFile);
            if (Header.HasExtendedL2)
            {
                WriteInExtendedCluster(clusterOffset, inCluster, data, index, count, zero, table, l2Offset, l2Index, e, inPlace);
                return;
            }
            if (inPlace && e.Type == ClusterType.Normal)
            {
                WriteData(e.HostOffset + inCluster, data, index, count, zero);
                return;
            }

            // Copy on write into a new cluster: old content (backing, zeros, compressed, shared data) + the new bytes.
            if (_cowBuffer == null) _cowBuffer = new byte[cs];
            bool whole = inCluster == 0 && count == cs;
            if (!whole) ReadClusterForCow(clusterOffset, e, _cowBuffer);
            if (zero) Array.Clear(_cowBuffer, inCluster, count);
            else Array.Copy(data, index, _cowBuffer, inCluster, count);

            long host;
            if (inPlace)
                host = e.HostOffset;  // preallocated zero cluster (ZeroAllocated, COPIED): reuse it
            else if (Header.HasExternalDataFile)
                host = clusterOffset;  // external data file: host offset = guest offset, not refcounted
            else
                host = AllocateClusters(1);
            _dataFile.WriteAt(host, _cowBuffer, 0, cs);
            if (!inPlace) ReleaseEntry(e);
            SetL2Entry(table, l2Offset, l2Index, (ulong)host | L2Entry.CopiedFlag, 0);
        }

        private void WriteData(long host, byte[] data, int index, int count, bool zero)
        {
            if (zero)
            {
                var zeros = new byte[count];
                _dataFile.WriteAt(host, zeros, 0, count);
            }
            else _dataFile.WriteAt(host, data, index, count);
        }

        /// <summary>
        /// Extended L2: only the touched subclusters change. Partial subclusters at the edges are
        /// filled from their old content; untouched subclusters keep their state (QEMU:
        /// handle_alloc_space with subcluster COW).
        /// </summary>
        private void WriteInExtendedCluster(long clusterOffset, int inCluster, byte[] data, int index, int count, bool zero,
            byte[] table, long l2Offset, int l2Index, L2Entry e, bool inPlace)
        {
            int cs = ClusterSize;
            int sc = cs / 32;
            int first = inCluster / sc;
            int last = (inCluster + count - 1) / sc;
            if (_cowBuffer == null) _cowBuffer = new byte[cs];
            ulong bitmap = e.Bitmap;

            long host;
            if (e.IsCompressed || (!inPlace && e.Type == ClusterType.Normal))
            {
                // Compressed or shared: the whole cluster moves to a new host cluster.
                ReadClusterForCow(clusterOffset, e, _cowBuffer);
                if (zero) Array.Clear(_cowBuffer, inCluster, count);
                else Array.Copy(data, index, _cowBuffer, inCluster, count);
                host = Header.HasExternalDataFile ? clusterOffset : AllocateClusters(1);
                _dataFile.WriteAt(host, _cowBuffer, 0, cs);
                ReleaseEntry(e);
                // Every subcluster that read as something specific keeps doing so: all allocated now.
                SetL2Entry(table, l2Offset, l2Index, (ulong)host | L2Entry.CopiedFlag, 0xFFFF_FFFFUL);
                return;
            }

            if (inPlace) host = Header.HasExternalDataFile ? clusterOffset : e.HostOffset;
            else
            {
                host = Header.HasExternalDataFile ? clusterOffset : AllocateClusters(1);
                if (e.HostOffset != 0) ReleaseEntry(e);  // unallocated-but-preallocated host cluster of another owner
            }

            // Edge subclusters that are partly written and not allocated get their old content first.
            int start = first * sc, end = (last + 1) * sc;
            bool headPartial = inCluster > start && (bitmap & (1UL << first)) == 0;
            bool tailPartial = inCluster + count < end && (bitmap & (1UL << last)) == 0;
            if (headPartial || tailPartial)
            {
                ReadClusterForCow(clusterOffset, e, _cowBuffer);
                if (zero) Array.Clear(_cowBuffer, inCluster, count);
                else Array.Copy(data, index, _cowBuffer, inCluster, count);
                _dataFile.WriteAt(host + start, _cowBuffer, start, end - start);
            }
            else WriteData(host + inCluster, data, index, count, zero);

            for (int s = first; s <= last; s++)
            {
                bitmap |= 1UL << s;
                bitmap &= ~(1UL << (s + 32));
            }
            SetL2Entry(table, l2Offset, l2Index, (ulong)host | L2Entry.CopiedFlag, bitmap);
        }

        /// <summary>
        /// Makes a whole cluster read as zeros without writing data: v3 zero flag (the old host
        /// cluster freed), or on v2 plain deallocation where nothing shows through from below.
        /// Returns false when zeros must be written as data (v2 over a backing file).
        /// </summary>
        private bool ZeroWholeCluster(long clusterOffset)
        {
            long l1Index = (clusterOffset >> ClusterBits) / Header.L2Entries;
            bool backing = HasBackingData(clusterOffset);
            if (Header.Version < 3 && backing) return false;
            if (Header.HasExternalDataFile && Header.RawExternalData) return false;  // the data file must read as the disk

            if (L2OffsetOf(_l1[l1Index], l1Index) == 0 && !backing && Header.Version < 3) return true;  // already reads as zeros
            var (table, l2Offset, l2Index, e) = EntryForWrite(clusterOffset);
            ReleaseEntry(e);
            if (Header.HasExtendedL2)
                SetL2Entry(table, l2Offset, l2Index, 0, L2Entry.AllSubclustersZero);
            else if (Header.Version >= 3)
                SetL2Entry(table, l2Offset, l2Index, L2Entry.ZeroFlag, 0);
            else
                SetL2Entry(table, l2Offset, l2Index, 0, 0);
            return true;
        }

        /// <summary>Extended L2: whole subclusters become zero (bits), partial ones get explicit zeros.</summary>
        private bool ZeroSubclusters(long clusterOffset, int inCluster, int count)
        {
            int sc = ClusterSize / 32;
            int firstWhole = (inCluster + sc - 1) / sc;
            int endWhole = (inCluster + count) / sc;
            if (firstWhole >= endWhole) return false;
            if (Header.HasExternalDataFile && Header.RawExternalData) return false;
            var (table, l2Offset, l2Index, e) = EntryForWrite(clusterOffset);
            if (e.IsCompressed || (e.Type == ClusterType.Normal && !e.IsCopied)) return false;  // needs the COW path

            // Partial edges first (explicit zeros through the normal path), then the whole subclusters.
            if (inCluster < firstWhole * sc)
                WriteInCluster(clusterOffset, inCluster, null, 0, firstWhole * sc - inCluster, zero: true);
            if (inCluster + count > endWhole * sc)
                WriteInCluster(clusterOffset, endWhole * sc, null, 0, inCluster + count - endWhole * sc, zero: true);
            (table, l2Offset, l2Index, e) = EntryForWrite(clusterOffset);
            ulong bitmap = e.Bitmap;
            for (int s = firstWhole; s < endWhole; s++)
            {
                bitmap &= ~(1UL << s);
                bitmap |= 1UL << (s + 32);
            }
            SetL2Entry(table, l2Offset, l2Index, e.Raw, bitmap);
            return true;
        }
    
        /// <summary>
        /// Allocates every L2 table and data cluster (preallocation=metadata; with full, zeros are
        /// written too), each L2 table followed by the data clusters it maps, as QEMU lays them out.
        /// Extended L2 entries get a host cluster with no subcluster allocated, so a backing file still shows.
        /// </summary>
        internal void Preallocate(bool full)
        {
            lock (_gate)
            {
                ThrowIfReadOnly();
                long clusters = (Length + ClusterSize - 1) >> ClusterBits;
                long l2Entries = Header.L2Entries;
                var zeros = full ? new byte[Math.Min(ClusterSize * 64, 4 << 20)] : null;
                for (long first = 0; first < clusters; first += l2Entries)
                {
                    long l1Index = first / l2Entries;
                    int count = (int)Math.Min(l2Entries, clusters - first);
                    var (table, l2Offset) = L2TableForWrite(l1Index);
                    long data = Header.HasExternalDataFile ? first << ClusterBits : AllocateClusters(count);
                    for (int j = 0; j < count; j++)
                    {
                        long host = data + ((long)j << ClusterBits);
                        SetL2Entry(table, l2Offset, j, (ulong)host | L2Entry.CopiedFlag, 0);
                    }
                    long end = data + ((long)count << ClusterBits);
                    if (full)
                    {
                        for (long pos = data; pos < end; pos += zeros.Length)
                            _dataFile.WriteAt(pos, zeros, 0, (int)Math.Min(zeros.Length, end - pos));
                    }
                    else if (end > _dataFile.Length) _dataFile.SetLength(end);
                }
                FlushMetadata();
                SyncFile();
            }
        }
    }
}
