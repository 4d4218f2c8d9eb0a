using System;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    // Opening for writing, closing, and the crash-safe flush (QEMU: qcow2_cache_flush,
    // qcow2_mark_dirty, qcow2_inactivate). The guest write path is in Qcow2Image.Write.cs.
    //
    // Crash safety: data is written straight to the file; metadata (refcount blocks, L2 tables, the
    // L1 table, the header) is kept dirty in memory and written by FlushMetadata in dependency order
    // with fsyncs between: refcounts first (a crash leaves leaks, never a referenced cluster with
    // refcount 0), then L2 tables, then L1, then the header; decrements of clusters whose last
    // reference went away are applied only after that (a freed cluster is never reused while a
    // durable table still names it).
    public sealed partial class Qcow2Image
    {
        private bool _l1Dirty;            // the active L1 table changed since the last flush
        private bool _skipFsync;          // a conversion's temporary file: no fsyncs until it is complete
        private bool _dirtyBitWritten;    // the v3 dirty bit is set on disk for an unordered update
        private bool _closedForWriting;

        /// <summary>The ordering point of crash safety: fsync (left out only while a conversion's temporary file is filled).</summary>
        private void SyncFile()
        {
            if (!_skipFsync) _file.Flush();
        }

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
    }
}
