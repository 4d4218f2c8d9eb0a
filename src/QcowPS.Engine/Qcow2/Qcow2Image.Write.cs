using System;
using System.Collections.Generic;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    // Allocation and writes (QEMU: qcow2_co_pwritev_part, qcow2_alloc_cluster_offset, handle_copied,
    // handle_alloc, zero_in_l2_slice).
    //
    // Crash safety: data is written straight to the file; metadata (refcount blocks, L2 tables, the
    // L1 table, the header) is kept dirty in memory and written by FlushMetadata in dependency order
    // with fsyncs between: refcounts first (a crash leaves leaks, never a referenced cluster with
    // refcount 0), then L2 tables, then L1, then the header; decrements of clusters whose last
    // reference went away are applied only after that (a freed cluster is never reused while a
    // durable table still names it).
    public sealed partial class Qcow2Image
    {
        private bool _l1Dirty;
        private bool _skipFsync;

        /// <summary>The ordering point of crash safety: fsync (left out only while a conversion's temporary file is filled).</summary>
        private void SyncFile()
        {
            if (!_skipFsync) _file.Flush();
        }
        private bool _dirtyBitWritten;
        private bool _closedForWriting;

        private void PrepareForWriting(OpenOptions options)
        {
            _freeClusterHint = 0;
            _l2Cache.FlushRequested = () => FlushMetadata();
            _refcountCache.FlushRequested = () => FlushMetadata();
            if (Header.IsDirty && options.RepairDirty)
            {
                // Lazy refcounts left unflushed by a crash (or another writer): rebuild them before writing, as QEMU does.
                CheckLocked(Qcow2RepairMode.All);
                Header.IncompatibleFeatures &= ~(ulong)Qcow2IncompatibleFeatures.Dirty;
                WriteHeader();
                SyncFile();
            }
            // Unknown autoclear bits must be cleared before writing (spec: autoclear_features).
            // Bitmaps are known: they are kept exact (Qcow2Image.Bitmaps.cs).
            ulong knownAutoclear = (ulong)(Qcow2AutoclearFeatures.Bitmaps | Qcow2AutoclearFeatures.RawExternalData);
            if ((Header.AutoclearFeatures & ~knownAutoclear) != 0)
            {
                Header.AutoclearFeatures &= knownAutoclear;
                WriteHeader();
                SyncFile();
            }
        }

        private void CloseForWriting()
        {
            if (_closedForWriting) return;
            _closedForWriting = true;
            FlushMetadata();
            StoreBitmapsOnClose();
            if (_dirtyBitWritten)
            {
                Header.IncompatibleFeatures &= ~(ulong)Qcow2IncompatibleFeatures.Dirty;
                WriteHeader();
                SyncFile();
                _dirtyBitWritten = false;
            }
        }

        private void ThrowIfReadOnly()
        {
            ThrowIfDisposed();
            if (!_writable)
            {
                if (Header.IsCorrupt)
                    throw new QcowException(QcowErrorKind.ReadOnly, Path, $"'{Path}' is marked corrupt and opens read-only; run Repair-QcowImage -All first");
                throw new QcowException(QcowErrorKind.ReadOnly, Path, $"'{Path}' is open read-only");
            }
            if (Header.IsEncrypted)
                throw QcowException.Unsupported(Path, "Writing encrypted images is not supported");
            if (!_bitmapTrackingStarted) BeginBitmapTracking();
        }

        /// <summary>
        /// Marks the image dirty (v3) for an operation whose refcount and COPIED-flag updates cannot be
        /// ordered so that every intermediate state passes a check (taking, deleting or applying a
        /// snapshot): a crash in between leaves the dirty bit, and the next read-write open repairs the
        /// image, as QEMU does for lazy refcounts.
        /// </summary>
        private void BeginUnorderedUpdate()
        {
            if (Header.Version < 3 || Header.IsDirty) return;
            Header.IncompatibleFeatures |= (ulong)Qcow2IncompatibleFeatures.Dirty;
            WriteHeader();
            SyncFile();
            _dirtyBitWritten = true;
        }

        private void EndUnorderedUpdate()
        {
            if (!_dirtyBitWritten || Header.LazyRefcounts) return;
            FlushMetadata();
            SyncFile();
            Header.IncompatibleFeatures &= ~(ulong)Qcow2IncompatibleFeatures.Dirty;
            WriteHeader();
            SyncFile();
            _dirtyBitWritten = false;
        }

        internal void WriteHeader()
        {
            var bytes = Header.Serialize();
            // The fields that change (sizes, table offsets, feature bits) all lie in the first sector;
            // write only up to the end of what the header uses.
            int used = bytes.Length;
            while (used > 512 && bytes[used - 1] == 0) used--;
            used = (used + 511) & ~511;
            _file.WriteAt(0, bytes, 0, Math.Min(used, bytes.Length));
        }

        public override void Flush()
        {
            lock (_gate)
            {
                ThrowIfDisposed();
                if (!_writable) return;
                FlushMetadata();
                if (!ReferenceEquals(_dataFile, _file)) _dataFile.Flush();
                SyncFile();
            }
        }

        /// <summary>Writes all dirty metadata in the crash-safe order described at the top of this file.</summary>
        internal void FlushMetadata()
        {
            bool anyDirty = _refcountCache.DirtyCount > 0 || _l2Cache.DirtyCount > 0 || _l1Dirty || _refcountTableDirty || _pendingFrees.Count > 0;
            if (!anyDirty) return;
            if (Header.LazyRefcounts && !_dirtyBitWritten)
            {
                Header.IncompatibleFeatures |= (ulong)Qcow2IncompatibleFeatures.Dirty;
                WriteHeader();
                SyncFile();
                _dirtyBitWritten = true;
            }
            if (!ReferenceEquals(_dataFile, _file)) _dataFile.Flush();

            WriteRefcountMetadata();

            var l2 = _l2Cache.DirtyTables();
            foreach (var t in l2) _file.WriteAt(t.Key, t.Value, 0, t.Value.Length);
            if (l2.Count > 0) SyncFile();
            foreach (var t in l2) _l2Cache.MarkClean(t.Key);

            if (_l1Dirty)
            {
                WriteL1Table((long)Header.L1TableOffset, _l1);
                SyncFile();
                _l1Dirty = false;
            }

            ApplyPendingFrees();
        }

        /// <summary>Step 5: the references are durable elsewhere now; drop the old ones.</summary>
        private void ApplyPendingFrees()
        {
            if (_pendingFrees.Count == 0) return;
            var frees = _pendingFrees.ToArray();
            _pendingFrees.Clear();
            foreach (var f in frees)
            {
                ChangeRefcount(f.Key, -f.Value);
                if (GetRefcountLocked(f.Key) == 0) _l2Cache.Remove(f.Key << ClusterBits);
            }
            WriteRefcountMetadata();
        }

        internal void WriteL1Table(long offset, ulong[] l1)
        {
            var bytes = new byte[l1.Length * 8];
            for (int i = 0; i < l1.Length; i++) BigEndian.Put64(bytes, i * 8, l1[i]);
            if (bytes.Length > 0) _file.WriteAt(offset, bytes, 0, bytes.Length);
        }

        // ---- Guest writes ------------------------------------------------------------------------

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

        private byte[] _cowBuffer;

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
                SetL2Entry(table, l2Offset, l2Index, 0, 0xFFFF_FFFFUL << 32);
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
