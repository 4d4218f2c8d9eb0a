using System;
using System.Collections.Generic;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    // Consistency check and repair (QEMU: qcow2_check_refcounts and friends in block/qcow2-refcount.c).
    // Refcounts are rebuilt from the tables and compared with the stored ones; the counts follow
    // qemu-img check so that the two agree on every image.
    public sealed partial class Qcow2Image
    {
        /// <summary>
        /// Checks (and with a repair mode, repairs) the image, like qemu-img check [-r]. progress, if
        /// given, is called on this thread with (L1 entries walked, L1 entries in all) as each pass
        /// walks the tables (a repair makes more than one pass).
        /// </summary>
        public QcowCheckResult Check(Qcow2RepairMode mode = Qcow2RepairMode.None, Action<long, long> progress = null)
        {
            lock (_gate)
            {
                ThrowIfDisposed();
                if (mode != Qcow2RepairMode.None && !_writable)
                    throw new QcowException(QcowErrorKind.ReadOnly, Path, $"'{Path}' must be opened for writing to be repaired");
                return CheckLocked(mode, progress);
            }
        }

        private QcowCheckResult CheckLocked(Qcow2RepairMode mode, Action<long, long> progress = null)
        {
            if (_writable) FlushMetadata();
            var first = new CheckPass(this, mode, progress);
            first.Run();
            if (mode == Qcow2RepairMode.None) return first.Result;
            FlushMetadata();
            SyncFile();
            // Double check, as qemu-img does after a repair; report what remains plus what was fixed.
            var second = new CheckPass(this, Qcow2RepairMode.None, progress);
            second.Run();
            second.Result.CorruptionsFixed = first.Result.CorruptionsFixed;
            second.Result.LeaksFixed = first.Result.LeaksFixed;
            second.Result.Problems.InsertRange(0, first.Result.Problems);
            if (second.Result.Corruptions == 0 && second.Result.CheckErrors == 0 && (Header.IsCorrupt || (Header.IsDirty && !_dirtyBitWritten)))
            {
                // Consistent again: the corrupt and dirty marks go (QEMU: qcow2_mark_consistent, qcow2_mark_clean).
                Header.IncompatibleFeatures &= ~(ulong)(Qcow2IncompatibleFeatures.Corrupt | Qcow2IncompatibleFeatures.Dirty);
                WriteHeader();
                SyncFile();
            }
            return second.Result;
        }

        /// <summary>One pass of the check over the image's current state.</summary>
        private sealed class CheckPass
        {
            private readonly Qcow2Image _image;
            private readonly Qcow2RepairMode _mode;
            private readonly Action<long, long> _progress;
            private long _entriesWalked, _entriesInAll;
            private ulong[] _computed;
            private long _fileClusters;
            private long _nextContiguous;
            private bool _rebuild;

            public QcowCheckResult Result { get; } = new QcowCheckResult();

            public CheckPass(Qcow2Image image, Qcow2RepairMode mode, Action<long, long> progress)
            {
                _image = image;
                _mode = mode;
                _progress = progress;
                Result.Path = image.Path;
            }

            private Qcow2Header Header => _image.Header;
            private int ClusterBits => _image.ClusterBits;
            private int ClusterSize => _image.ClusterSize;
            private bool FixLeaks => _mode != Qcow2RepairMode.None;
            private bool FixErrors => _mode == Qcow2RepairMode.All;

            private void Problem(string text) => Result.Problems.Add(text);

            public void Run()
            {
                CalculateRefcounts();
                // A dry comparison first: whether the refcount structure itself needs rebuilding decides
                // what a repair may do (qemu-img check -r leaks refuses such an image and changes nothing).
                long highest = CompareRefcounts(false, false);
                if (!_rebuild && (FixLeaks || FixErrors) && (Result.Leaks > 0 || Result.Corruptions > 0))
                {
                    Result.Leaks = Result.Corruptions = Result.CheckErrors = 0;
                    Result.Problems.Clear();
                    CalculateRefcounts();
                    highest = CompareRefcounts(FixLeaks, FixErrors);
                }
                if (_rebuild && FixErrors)
                {
                    Problem("Rebuilding refcount structure");
                    _image.RebuildRefcountStructure(_computed);
                    // The old structures are leaked now: count again and fix those leaks without reporting them as found.
                    int corruptionsFixed = Result.CorruptionsFixed + Result.Corruptions;
                    int leaksFixed = Result.LeaksFixed + Result.Leaks;  // as qemu-img: what was found before the rebuild counts as fixed
                    Result.Corruptions = 0;
                    Result.Leaks = 0;
                    _rebuild = false;
                    CalculateRefcounts();
                    highest = CompareRefcounts(true, false);
                    Result.CorruptionsFixed = corruptionsFixed;
                    Result.LeaksFixed = leaksFixed;
                    if (_rebuild) { Problem("ERROR rebuilt refcount structure is still broken"); Result.CheckErrors++; }
                }
                else if (_rebuild && FixLeaks)
                {
                    Problem("ERROR need to rebuild refcount structures (use -All)");
                    Result.CheckErrors++;
                }
                CheckCopiedFlags();
                Result.ImageEndOffset = (highest + 1) << ClusterBits;
                Result.TotalClusters = (_image.Length + ClusterSize - 1) >> ClusterBits;
            }

            // ---- counting references -------------------------------------------------------------

            private void CalculateRefcounts()
            {
                _fileClusters = (_image._file.Length + ClusterSize - 1) >> ClusterBits;
                _computed = new ulong[Math.Max(1, _fileClusters)];
                Result.AllocatedClusters = Result.FragmentedClusters = Result.CompressedClusters = 0;
                _nextContiguous = 0;

                Inc(0, ClusterSize);
                _entriesWalked = 0;
                _entriesInAll = _image._l1.Length;
                foreach (var s in _image._snapshots) _entriesInAll += s.L1Size;
                CheckL1((long)Header.L1TableOffset, Header.L1Size, active: true, l1: _image._l1);
                if (Header.HasExternalDataFile && _image._snapshots.Count > 0)
                {
                    Problem("ERROR: the image has an external data file and internal snapshots");
                    Result.Corruptions++;
                }
                foreach (var s in _image._snapshots)
                {
                    ulong[] l1;
                    try { l1 = _image.ReadL1Table(s.L1TableOffset, s.L1Size, $"L1 table of snapshot '{s.Name}'"); }
                    catch (QcowException e)
                    {
                        Problem($"ERROR snapshot {s.Id} ({s.Name}): {e.Message}");
                        Result.Corruptions++;
                        continue;
                    }
                    CheckL1(s.L1TableOffset, s.L1Size, active: false, l1: l1);
                }
                if (Header.SnapshotCount > 0)
                {
                    long size = 0;
                    foreach (var s in _image._snapshots) size += s.EntrySize;
                    Inc((long)Header.SnapshotsOffset, size);
                }
                Inc((long)Header.RefcountTableOffset, (long)_image._refcountTable.Length * 8);
                if (Header.EncryptionHeaderLength > 0) Inc((long)Header.EncryptionHeaderOffset, (long)Header.EncryptionHeaderLength);
                CountBitmaps();
                CheckRefcountBlocks();
            }

            /// <summary>Adds one reference to every cluster of [offset, offset+size) (qcow2_inc_refcounts_imrt).</summary>
            private void Inc(long offset, long size)
            {
                if (size <= 0) return;
                if (offset < 0 || offset > long.MaxValue - size)
                {
                    // Only a hostile file has offsets with the top bits set.
                    Problem($"ERROR cluster offset 0x{(ulong)offset:X} is beyond any file");
                    Result.Corruptions++;
                    return;
                }
                long first = offset >> ClusterBits;
                long last = (offset + size - 1) >> ClusterBits;
                for (long k = first; k <= last; k++)
                {
                    if (k >= _computed.Length)
                    {
                        // References past the end of the file: grow, but not for absurd offsets of a hostile file.
                        if (k > _fileClusters + (1L << 20))
                        {
                            Problem($"ERROR cluster offset 0x{k << ClusterBits:X} lies far beyond the end of the file");
                            Result.Corruptions++;
                            return;
                        }
                        Array.Resize(ref _computed, (int)Math.Max(k + 1, _computed.Length * 2L));
                    }
                    if (_computed[k] == _image.MaxRefcount)
                    {
                        Problem($"ERROR: overflow cluster offset=0x{k << ClusterBits:X}");
                        Result.Corruptions++;
                        continue;
                    }
                    _computed[k]++;
                }
            }

            private void CheckL1(long l1Offset, uint l1Size, bool active, ulong[] l1)
            {
                if (l1Size == 0) return;
                Inc(l1Offset, (long)l1Size * 8);
                for (long i = 0; i < l1.Length; i++)
                {
                    _progress?.Invoke(++_entriesWalked, _entriesInAll);
                    if (l1[i] == 0) continue;
                    if ((l1[i] & L1ReservedMask) != 0)
                    {
                        Problem($"ERROR found L1 entry with reserved bits set: {l1[i]:x}");
                        Result.Corruptions++;
                    }
                    long l2Offset = (long)(l1[i] & L1OffsetMask);
                    Inc(l2Offset, ClusterSize);
                    if ((l2Offset & (ClusterSize - 1)) != 0)
                    {
                        Problem($"ERROR l2_offset={l2Offset:x}: Table is not cluster aligned; L1 entry corrupted");
                        Result.Corruptions++;
                    }
                    byte[] table;
                    try
                    {
                        if (l2Offset == 0 || (l2Offset & (ClusterSize - 1)) != 0) throw QcowException.Corrupt(_image.Path, "invalid L2 table offset");
                        table = _image._l2Cache.Get(l2Offset);
                    }
                    catch (QcowException)
                    {
                        Problem($"ERROR: I/O error in check_refcounts_l2 (L2 table at 0x{l2Offset:X})");
                        Result.CheckErrors++;
                        continue;
                    }
                    CheckL2(table, active);
                }
            }

            private void CheckL2(byte[] table, bool active)
            {
                _nextContiguous = 0;  // as QEMU: contiguity is judged within one L2 table
                for (int i = 0; i < Header.L2Entries; i++)
                {
                    var e = _image.ReadL2Entry(table, i);
                    ulong bitmap = e.Bitmap;
                    if (!e.IsCompressed && (e.Raw & L2Entry.StandardReservedMask) != 0)
                    {
                        Problem($"ERROR found l2 entry with reserved bits set: {e.Raw:x}");
                        Result.Corruptions++;
                    }
                    switch (e.Type)
                    {
                        case ClusterType.Compressed:
                            if (e.IsCopied)
                            {
                                Problem($"ERROR: coffset=0x{e.CompressedOffset:x}: copied flag must never be set for compressed clusters");
                                Result.Corruptions++;
                            }
                            if (Header.HasExternalDataFile)
                            {
                                Problem($"ERROR compressed cluster {i} with data file");
                                Result.Corruptions++;
                                break;
                            }
                            if (bitmap != 0)
                            {
                                Problem($"ERROR compressed cluster {i} with non-zero subcluster allocation bitmap");
                                Result.Corruptions++;
                                break;
                            }
                            Inc(e.CompressedOffset, e.CompressedSize);
                            if (active)
                            {
                                Result.AllocatedClusters++;
                                Result.CompressedClusters++;
                                Result.FragmentedClusters++;
                            }
                            break;
                        case ClusterType.ZeroAllocated:
                        case ClusterType.Normal:
                        {
                            long offset = (long)(e.Raw & L2Entry.OffsetMask);
                            if (Header.HasExtendedL2 && (((uint)(bitmap >> 32)) & (uint)bitmap) != 0)
                            {
                                Problem($"ERROR offset={offset:x}: Allocated cluster has corrupted subcluster allocation bitmap");
                                Result.Corruptions++;
                            }
                            if ((offset & (ClusterSize - 1)) != 0)
                            {
                                Result.Corruptions++;
                                Problem($"ERROR offset={offset:x}: Cluster is not properly aligned; L2 entry corrupted.");
                                break;
                            }
                            if (active)
                            {
                                Result.AllocatedClusters++;
                                if (_nextContiguous != 0 && offset != _nextContiguous) Result.FragmentedClusters++;
                                _nextContiguous = offset + ClusterSize;
                            }
                            if (!Header.HasExternalDataFile) Inc(offset, ClusterSize);
                            break;
                        }
                        case ClusterType.Unallocated:
                            if (Header.HasExtendedL2 && (uint)bitmap != 0)
                            {
                                Problem("ERROR: Unallocated cluster has non-zero subcluster allocation bitmap");
                                Result.Corruptions++;
                            }
                            break;
                    }
                }
            }

            /// <summary>Bitmaps are kept, not interpreted, but their clusters are in use (qcow2_check_bitmaps_refcounts).</summary>
            private void CountBitmaps()
            {
                if (Header.BitmapCount == 0 || Header.BitmapDirectorySize == 0) return;
                long dirOffset = (long)Header.BitmapDirectoryOffset;
                long dirSize = (long)Header.BitmapDirectorySize;
                Inc(dirOffset, dirSize);
                if (dirSize > 64L << 20 || dirOffset < 0 || dirOffset + dirSize > _image._file.Length)
                {
                    Problem("ERROR bitmap directory lies outside the image");
                    Result.Corruptions++;
                    return;
                }
                var dir = new byte[dirSize];
                _image._file.ReadExactly(dirOffset, dir, 0, dir.Length, "bitmap directory");
                int pos = 0;
                for (uint n = 0; n < Header.BitmapCount && pos + 24 <= dir.Length; n++)
                {
                    long tableOffset = (long)BigEndian.U64(dir, pos);
                    uint tableSize = BigEndian.U32(dir, pos + 8);
                    int nameSize = BigEndian.U16(dir, pos + 18);
                    uint extra = BigEndian.U32(dir, pos + 20);
                    Inc(tableOffset, (long)tableSize * 8);
                    if (tableSize <= (1u << 24) && tableOffset > 0 && tableOffset + tableSize * 8L <= _image._file.Length)
                    {
                        var table = new byte[tableSize * 8];
                        _image._file.ReadExactly(tableOffset, table, 0, table.Length, "bitmap table");
                        for (int i = 0; i < tableSize; i++)
                        {
                            long cluster = (long)(BigEndian.U64(table, i * 8) & 0x00FF_FFFF_FFFF_FE00UL);
                            if (cluster != 0) Inc(cluster, ClusterSize);
                        }
                    }
                    pos += (int)((24 + extra + nameSize + 7) & ~7L);
                }
            }

            private void CheckRefcountBlocks()
            {
                var table = _image._refcountTable;
                for (long i = 0; i < table.Length; i++)
                {
                    long offset = (long)(table[i] & RefcountTableOffsetMask);
                    long cluster = offset >> ClusterBits;
                    if ((table[i] & 0x1FF) != 0)
                    {
                        Problem($"ERROR refcount table entry {i} has reserved bits set");
                        Result.Corruptions++;
                        _rebuild = true;
                        continue;
                    }
                    if ((offset & (ClusterSize - 1)) != 0)
                    {
                        Problem($"ERROR refcount block {i} is not cluster aligned; refcount table entry corrupted");
                        Result.Corruptions++;
                        _rebuild = true;
                        continue;
                    }
                    if ((ulong)cluster >= (ulong)_fileClusters)
                    {
                        Problem($"ERROR refcount block {i} is outside image");
                        Result.Corruptions++;
                        _rebuild = true;
                        continue;
                    }
                    if (offset != 0)
                    {
                        Inc(offset, ClusterSize);
                        if (_computed[cluster] != 1)
                        {
                            Problem($"ERROR refcount block {i} refcount={_computed[cluster]}");
                            Result.Corruptions++;
                            _rebuild = true;
                        }
                    }
                }
            }

            // ---- comparing with the stored refcounts ------------------------------------------------

            private long CompareRefcounts(bool fixLeaks, bool fixErrors)
            {
                long highest = 0;
                for (long i = 0; i < _computed.Length; i++)
                {
                    ulong stored;
                    try { stored = _image.GetRefcountLocked(i); }
                    catch (QcowException)
                    {
                        Problem($"Can't get refcount for cluster {i}");
                        Result.CheckErrors++;
                        continue;
                    }
                    ulong reference = _computed[i];
                    if (stored > 0 || reference > 0) highest = i;
                    if (stored == reference) continue;

                    bool fix = false;
                    if (stored == 0) _rebuild = true;
                    else if (stored > reference && fixLeaks) fix = true;
                    else if (stored < reference && fixErrors) fix = true;
                    Problem($"{(fix ? "Repairing" : stored < reference ? "ERROR" : "Leaked")} cluster {i} refcount={stored} reference={reference}");
                    if (fix)
                    {
                        SetRefcountForRepair(i, reference);
                        if (stored > reference) Result.LeaksFixed++;
                        else Result.CorruptionsFixed++;
                        continue;
                    }
                    if (stored < reference) Result.Corruptions++;
                    else Result.Leaks++;
                }
                return highest;
            }

            private void SetRefcountForRepair(long index, ulong value)
            {
                var computed = _computed;
                // New refcount blocks must not land on clusters the tables use, and count as used themselves.
                _image.InUseOverride = k => k < _computed.Length && _computed[k] > 0;
                _image.AllocationObserver = (start, count) =>
                {
                    for (long k = start; k < start + count; k++)
                    {
                        if (k >= _computed.Length) Array.Resize(ref _computed, (int)Math.Max(k + 1, _computed.Length * 2L));
                        _computed[k]++;
                    }
                };
                try { _image.SetRefcount(index, value); }
                finally
                {
                    _image.InUseOverride = null;
                    _image.AllocationObserver = null;
                }
            }

            /// <summary>COPIED must be set exactly when the refcount is 1, in the active tables (check_oflag_copied).</summary>
            private void CheckCopiedFlags()
            {
                var l1 = _image._l1;
                for (long i = 0; i < l1.Length; i++)
                {
                    long l2Offset = (long)(l1[i] & L1OffsetMask);
                    if (l2Offset == 0 || (l2Offset & (ClusterSize - 1)) != 0) continue;
                    ulong refcount;
                    try { refcount = _image.GetRefcountLocked(l2Offset >> ClusterBits); }
                    catch (QcowException) { continue; }
                    bool copied = (l1[i] & L2Entry.CopiedFlag) != 0;
                    if ((refcount == 1) != copied)
                    {
                        Problem($"{(FixErrors ? "Repairing" : "ERROR")} OFLAG_COPIED L2 cluster: l1_index={i} l1_entry={l1[i]:x} refcount={refcount}");
                        if (FixErrors)
                        {
                            l1[i] = refcount == 1 ? l1[i] | L2Entry.CopiedFlag : l1[i] & ~L2Entry.CopiedFlag;
                            _image._l1Dirty = true;
                            Result.CorruptionsFixed++;
                        }
                        else Result.Corruptions++;
                    }
                    byte[] table;
                    try { table = _image._l2Cache.Get(l2Offset); }
                    catch (QcowException) { continue; }
                    for (int j = 0; j < Header.L2Entries; j++)
                    {
                        var e = _image.ReadL2Entry(table, j);
                        if (e.Type != ClusterType.Normal && e.Type != ClusterType.ZeroAllocated) continue;
                        long offset = e.HostOffset;
                        if ((offset & (ClusterSize - 1)) != 0) continue;
                        ulong count;
                        if (Header.HasExternalDataFile) count = 1;
                        else
                        {
                            try { count = _image.GetRefcountLocked(offset >> ClusterBits); }
                            catch (QcowException) { continue; }
                        }
                        if ((count == 1) != e.IsCopied)
                        {
                            Problem($"{(FixErrors ? "Repairing" : "ERROR")} OFLAG_COPIED data cluster: l2_entry={e.Raw:x} refcount={count}");
                            if (FixErrors)
                            {
                                ulong raw = count == 1 ? e.Raw | L2Entry.CopiedFlag : e.Raw & ~L2Entry.CopiedFlag;
                                _image.SetL2Entry(table, l2Offset, j, raw, e.Bitmap);
                                Result.CorruptionsFixed++;
                            }
                            else Result.Corruptions++;
                        }
                    }
                }
            }
        }

        /// <summary>
        /// Writes a whole new refcount structure (table and blocks, at the end of the file) holding the
        /// computed counts, and switches the header to it (QEMU: rebuild_refcount_structure). The old
        /// structure is leaked and freed by the caller's leak pass.
        /// </summary>
        private void RebuildRefcountStructure(ulong[] computed)
        {
            int cs = ClusterSize;
            long perBlock = RefcountBlockEntries;
            long end = Math.Max(computed.Length, (_file.Length + cs - 1) >> ClusterBits);
            // Everything from 'end' on is free: the new blocks and table go there and must be covered too.
            long blocks = 0, tableClusters = 0;
            while (true)
            {
                long covered = end + blocks + tableClusters;
                long neededBlocks = (covered + perBlock - 1) / perBlock;
                long neededTable = (neededBlocks * 8 + cs - 1) / cs;
                if (neededBlocks == blocks && neededTable == tableClusters) break;
                blocks = neededBlocks;
                tableClusters = neededTable;
            }
            if (tableClusters * cs > Qcow2Header.MaxRefcountTableBytes)
                throw new QcowException(QcowErrorKind.Unsupported, Path, "The rebuilt refcount table would exceed QEMU's limit");
            long blocksStart = end;
            long tableStart = end + blocks;
            var counts = new ulong[end + blocks + tableClusters];
            Array.Copy(computed, counts, computed.Length);
            for (long k = end; k < counts.Length; k++) counts[k] = 1;

            var table = new ulong[tableClusters * cs / 8];
            var block = new byte[cs];
            for (long b = 0; b < blocks; b++)
            {
                Array.Clear(block, 0, cs);
                for (long j = 0; j < perBlock; j++)
                {
                    long k = b * perBlock + j;
                    if (k >= counts.Length) break;
                    if (counts[k] != 0) WriteRefcountEntry(block, (int)j, Header.RefcountOrder, Math.Min(counts[k], MaxRefcount));
                }
                long offset = (blocksStart + b) << ClusterBits;
                _file.WriteAt(offset, block, 0, cs);
                table[b] = (ulong)offset;
            }
            var tableBytes = new byte[table.Length * 8];
            for (int i = 0; i < table.Length; i++) BigEndian.Put64(tableBytes, i * 8, table[i]);
            _file.WriteAt(tableStart << ClusterBits, tableBytes, 0, tableBytes.Length);
            SyncFile();

            _refcountCache.Clear();
            _refcountTable = table;
            _refcountTableDirty = false;
            _newRefcountTableOffset = 0;
            Header.RefcountTableOffset = (ulong)(tableStart << ClusterBits);
            Header.RefcountTableClusters = (uint)tableClusters;
            WriteHeader();
            SyncFile();
            _freeClusterHint = 0;
        }
    }
}
