using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    // Internal snapshots (QEMU: block/qcow2-snapshot.c). A snapshot is an L1 table plus a snapshot table
    // entry; taking one adds a reference to every L2 table and data cluster the active L1 table reaches
    // (so later writes copy on write), deleting one drops them. Where a refcount is already at its
    // width's maximum (1-bit refcounts!), the cluster is copied instead of shared.
    public sealed partial class Qcow2Image
    {
        public Qcow2Snapshot CreateSnapshot(string name, DateTime? date = null, TimeSpan? vmClock = null)
        {
            lock (_gate)
            {
                ThrowIfReadOnly();
                if (string.IsNullOrEmpty(name))
                    throw new QcowException(QcowErrorKind.InvalidArgument, Path, "A snapshot needs a name");
                if (Header.HasExternalDataFile)
                    throw QcowException.Unsupported(Path, "Images with an external data file cannot have internal snapshots");
                if (_snapshots.Any(s => s.Name == name))
                    throw new QcowException(QcowErrorKind.InvalidArgument, Path, $"A snapshot named '{name}' already exists in '{Path}'");
                if (_snapshots.Count >= Qcow2Header.MaxSnapshots)
                    throw new QcowException(QcowErrorKind.InvalidArgument, Path, $"'{Path}' already has the maximum of {Qcow2Header.MaxSnapshots} snapshots");
                FlushMetadata();
                BeginUnorderedUpdate();

                // 1. Reference (or copy) everything the active L1 reaches, for the snapshot's L1 table.
                var snapshotL1 = new ulong[_l1.Length];
                for (long i = 0; i < _l1.Length; i++)
                {
                    long l2Offset = L2OffsetOf(_l1[i], i);
                    if (l2Offset != 0) snapshotL1[i] = (ulong)ReferenceOrCopyL2(l2Offset);
                }
                // The shared clusters have two references now: the active tables must copy on write.
                FixActiveCopiedFlags();
                FlushMetadata();
                SyncFile();

                // 2. The snapshot's L1 table in new clusters.
                long l1Offset = 0;
                if (snapshotL1.Length > 0)
                {
                    l1Offset = AllocateClusters(ClustersFor(snapshotL1.Length * 8L));
                    WriteL1Table(l1Offset, snapshotL1);
                }

                // 3. The snapshot table with the new entry: from here on the snapshot exists.
                var now = date ?? DateTime.UtcNow;
                long unix = (long)(now.ToUniversalTime() - new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc)).TotalSeconds;
                var snapshot = new Qcow2Snapshot
                {
                    Id = NextSnapshotId(),
                    Name = name,
                    L1TableOffset = l1Offset,
                    L1Size = (uint)snapshotL1.Length,
                    DateSeconds = (uint)unix,
                    DateNanoseconds = (uint)((now.ToUniversalTime().Ticks % TimeSpan.TicksPerSecond) * 100),
                    VmClockNanoseconds = (ulong)((vmClock ?? TimeSpan.Zero).Ticks * 100),
                    VmStateSize = 0,
                    DiskSize = Header.Size,
                    Icount = -1,
                    ExtraData = Qcow2Snapshot.StandardExtraData(0, Header.Size, -1),
                };
                var list = new List<Qcow2Snapshot>(_snapshots) { snapshot };
                WriteSnapshotTable(list);
                EndUnorderedUpdate();
                return snapshot;
            }
        }

        public void DeleteSnapshot(string idOrName)
        {
            lock (_gate)
            {
                ThrowIfReadOnly();
                var snapshot = FindSnapshotLocked(idOrName) ??
                    throw new QcowException(QcowErrorKind.SnapshotNotFound, Path, $"Snapshot '{idOrName}' does not exist in '{Path}'");
                var l1 = ReadL1Table(snapshot.L1TableOffset, snapshot.L1Size, $"L1 table of snapshot '{snapshot.Name}'");
                FlushMetadata();
                BeginUnorderedUpdate();

                // 1. Remove the entry: the snapshot is gone (a crash after this leaves leaks only).
                WriteSnapshotTable(_snapshots.Where(s => !ReferenceEquals(s, snapshot)).ToList());

                // 2. Drop its references, then its L1 table.
                DropL1References(l1);
                if (snapshot.L1Size > 0) ReleaseClustersNow(snapshot.L1TableOffset, ClustersFor(snapshot.L1Size * 8L));
                WriteRefcountMetadata();

                // 3. Clusters only the active view uses now may be written in place again.
                FixActiveCopiedFlags();
                FlushMetadata();
                SyncFile();
                EndUnorderedUpdate();
            }
        }

        /// <summary>Makes a snapshot's data the active disk (qemu-img snapshot -a); the snapshot stays.</summary>
        public void ApplySnapshot(string idOrName)
        {
            lock (_gate)
            {
                ThrowIfReadOnly();
                var snapshot = FindSnapshotLocked(idOrName) ??
                    throw new QcowException(QcowErrorKind.SnapshotNotFound, Path, $"Snapshot '{idOrName}' does not exist in '{Path}'");
                // As QEMU (bdrv_snapshot_goto): the bitmaps could not describe the switch, so it is refused while any exist.
                if (LoadedBitmaps().Count > 0)
                    throw new QcowException(QcowErrorKind.InvalidArgument, Path,
                        $"Cannot apply snapshot '{snapshot.Name}' to '{Path}': the image has persistent bitmaps (QEMU: 'Device has active dirty bitmaps'); remove them first");
                var snapshotL1 = ReadL1Table(snapshot.L1TableOffset, snapshot.L1Size, $"L1 table of snapshot '{snapshot.Name}'");
                ulong size = snapshot.DiskSize ?? Header.Size;
                ulong needed = Qcow2Header.L1EntriesFor(size, ClusterBits, Header.HasExtendedL2);
                FlushMetadata();
                BeginUnorderedUpdate();

                // 1. The new active L1 references (or copies) what the snapshot's reaches.
                var newL1 = new ulong[Math.Max((long)needed, snapshotL1.Length)];
                for (long i = 0; i < snapshotL1.Length; i++)
                {
                    long l2Offset = L2OffsetOf(snapshotL1[i], i);
                    if (l2Offset != 0) newL1[i] = (ulong)ReferenceOrCopyL2(l2Offset);
                }
                long newL1Offset = newL1.Length > 0 ? AllocateClusters(ClustersFor(newL1.Length * 8L)) : 0;
                FlushMetadata();
                if (newL1.Length > 0) WriteL1Table(newL1Offset, newL1);
                SyncFile();

                // 2. Switch the header to it (one sector write).
                var oldL1 = _l1;
                long oldL1Offset = (long)Header.L1TableOffset;
                uint oldL1Size = Header.L1Size;
                Header.L1TableOffset = (ulong)newL1Offset;
                Header.L1Size = (uint)newL1.Length;
                Header.Size = size;
                WriteHeader();
                SyncFile();
                _l1 = newL1;

                // 3. The old active view's references go.
                DropL1References(oldL1);
                if (oldL1Size > 0) ReleaseClustersNow(oldL1Offset, ClustersFor(oldL1Size * 8L));
                WriteRefcountMetadata();
                FixActiveCopiedFlags();
                FlushMetadata();
                SyncFile();
                EndUnorderedUpdate();
            }
        }

        private Qcow2Snapshot FindSnapshotLocked(string idOrName) =>
            _snapshots.FirstOrDefault(s => s.Id == idOrName) ?? _snapshots.FirstOrDefault(s => s.Name == idOrName);

        private string NextSnapshotId()
        {
            long max = 0;
            foreach (var s in _snapshots)
                if (long.TryParse(s.Id, NumberStyles.None, CultureInfo.InvariantCulture, out long n) && n > max) max = n;
            return (max + 1).ToString(CultureInfo.InvariantCulture);
        }

        private int ClustersFor(long bytes) => (int)((bytes + ClusterSize - 1) >> ClusterBits);

        /// <summary>The host clusters an L2 entry holds a reference to (none, one, or a compressed range).</summary>
        private IEnumerable<long> ReferencedClusters(L2Entry e)
        {
            if (e.IsCompressed)
            {
                long start = e.CompressedOffset & ~511L;
                long first = start >> ClusterBits, last = (start + e.CompressedSectors * 512L - 1) >> ClusterBits;
                for (long c = first; c <= last; c++) yield return c;
            }
            else if (e.HostOffset != 0 && !Header.HasExternalDataFile) yield return e.HostOffset >> ClusterBits;
        }

        /// <summary>
        /// Adds a reference to an L2 table and every cluster it reaches and returns it; where any of
        /// those refcounts is at its maximum, returns a new table instead, sharing what it can and
        /// copying the rest (so 1-bit refcount images snapshot by copying).
        /// </summary>
        private long ReferenceOrCopyL2(long l2Offset)
        {
            var table = _l2Cache.Get(l2Offset);
            bool shareTable = CanAddReference(l2Offset >> ClusterBits);
            var counts = new Dictionary<long, int>();
            for (int j = 0; j < Header.L2Entries && shareTable; j++)
            {
                foreach (var c in ReferencedClusters(ReadL2Entry(table, j)))
                {
                    counts.TryGetValue(c, out int n);
                    counts[c] = n + 1;
                }
            }
            if (shareTable)
                foreach (var kv in counts)
                    if (MaxRefcount - GetRefcountLocked(kv.Key) < (ulong)kv.Value) { shareTable = false; break; }

            if (shareTable)
            {
                ChangeRefcount(l2Offset >> ClusterBits, +1);
                foreach (var kv in counts) ChangeRefcount(kv.Key, kv.Value);
                return l2Offset;
            }

            // Copy the table; each entry shares its data cluster when it can, else gets a copy of it.
            var source = (byte[])table.Clone();
            long copyOffset = AllocateClusters(1);
            var copy = _l2Cache.Create(copyOffset, source);
            var data = new byte[ClusterSize];
            for (int j = 0; j < Header.L2Entries; j++)
            {
                var e = ReadL2Entry(source, j);
                var clusters = ReferencedClusters(e).ToList();
                if (clusters.Count == 0)
                {
                    SetL2Entry(copy, copyOffset, j, e.Raw & ~L2Entry.CopiedFlag, e.Bitmap);
                    continue;
                }
                if (clusters.All(c => CanAddReference(c)))
                {
                    foreach (var c in clusters) ChangeRefcount(c, +1);
                    SetL2Entry(copy, copyOffset, j, e.Raw & ~L2Entry.CopiedFlag, e.Bitmap);
                    continue;
                }
                if (e.Type == ClusterType.ZeroAllocated && !Header.HasExtendedL2)
                {
                    SetL2Entry(copy, copyOffset, j, L2Entry.ZeroFlag, 0);
                    continue;
                }
                if (e.IsCompressed) Array.Copy(DecompressCluster(e.Raw, 0), data, ClusterSize);
                else _file.ReadOrZero(e.HostOffset, data, 0, ClusterSize);
                long host = AllocateClusters(1);
                _file.WriteAt(host, data, 0, ClusterSize);
                ulong bitmap = e.IsCompressed && Header.HasExtendedL2 ? 0xFFFF_FFFFUL : e.Bitmap;
                SetL2Entry(copy, copyOffset, j, (ulong)host, bitmap);
            }
            return copyOffset;
        }

        /// <summary>Drops the references an L1 table holds (its L2 tables and their clusters), immediately.</summary>
        private void DropL1References(ulong[] l1)
        {
            for (long i = 0; i < l1.Length; i++)
            {
                long l2Offset = L2OffsetOf(l1[i], i);
                if (l2Offset == 0) continue;
                var table = (byte[])_l2Cache.Get(l2Offset).Clone();
                for (int j = 0; j < Header.L2Entries; j++)
                    foreach (var c in ReferencedClusters(ReadL2Entry(table, j))) ReleaseClusterNow(c);
                ReleaseClusterNow(l2Offset >> ClusterBits);
            }
        }

        private void ReleaseClusterNow(long clusterIndex)
        {
            ChangeRefcount(clusterIndex, -1);
            if (GetRefcountLocked(clusterIndex) == 0) _l2Cache.Remove(clusterIndex << ClusterBits);
        }

        private void ReleaseClustersNow(long offset, int clusters)
        {
            for (int i = 0; i < clusters; i++) ReleaseClusterNow((offset >> ClusterBits) + i);
        }

        /// <summary>Sets COPIED exactly where the refcount is 1 in the active L1 table and its L2 tables.</summary>
        private void FixActiveCopiedFlags()
        {
            for (long i = 0; i < _l1.Length; i++)
            {
                long l2Offset = L2OffsetOf(_l1[i], i);
                if (l2Offset == 0) continue;
                bool single = GetRefcountLocked(l2Offset >> ClusterBits) == 1;
                ulong flagged = single ? _l1[i] | L2Entry.CopiedFlag : _l1[i] & ~L2Entry.CopiedFlag;
                if (flagged != _l1[i])
                {
                    _l1[i] = flagged;
                    _l1Dirty = true;
                }
                var table = _l2Cache.Get(l2Offset);
                for (int j = 0; j < Header.L2Entries; j++)
                {
                    var e = ReadL2Entry(table, j);
                    if (e.IsCompressed || e.HostOffset == 0 || Header.HasExternalDataFile) continue;
                    bool one = GetRefcountLocked(e.HostOffset >> ClusterBits) == 1;
                    ulong raw = one ? e.Raw | L2Entry.CopiedFlag : e.Raw & ~L2Entry.CopiedFlag;
                    if (raw != e.Raw) SetL2Entry(table, l2Offset, j, raw, e.Bitmap);
                }
            }
        }

        /// <summary>Writes a snapshot table to new clusters, switches the header to it, frees the old one.</summary>
        private void WriteSnapshotTable(List<Qcow2Snapshot> snapshots)
        {
            var bytes = Qcow2Snapshot.SerializeTable(snapshots);
            long newOffset = 0;
            if (bytes.Length > 0)
            {
                newOffset = AllocateClusters(ClustersFor(bytes.Length));
                _file.WriteAt(newOffset, bytes, 0, bytes.Length);
            }
            FlushMetadata();
            SyncFile();

            long oldOffset = (long)Header.SnapshotsOffset;
            long oldSize = _snapshots.Sum(s => (long)s.EntrySize);
            Header.SnapshotCount = (uint)snapshots.Count;
            Header.SnapshotsOffset = (ulong)newOffset;
            WriteHeader();
            SyncFile();
            _snapshots = snapshots;
            if (oldOffset != 0 && oldSize > 0) FreeClustersLater(oldOffset, oldSize);
            FlushMetadata();
        }
    }
}
