using System;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    // Changing the virtual size (QEMU: qcow2_co_truncate, qcow2_grow_l1_table, qcow2_shrink_l1_table).
    public sealed partial class Qcow2Image
    {
        /// <summary>
        /// The size a resize to newSize gives (rounded up to 512 bytes), or the error it would fail with:
        /// read-only opens can ask first (-WhatIf), and Resize asks the same.
        /// </summary>
        public long CheckResize(long newSize, bool allowShrink)
        {
            lock (_gate)
            {
                if (newSize < 0 || newSize > Qcow2Header.MaxVirtualSize)
                    throw new QcowException(QcowErrorKind.InvalidArgument, Path, $"Size {newSize} is out of range");
                newSize = (newSize + 511) & ~511L;
                long oldSize = Length;
                if (newSize < oldSize)
                {
                    if (!allowShrink)
                        throw new QcowException(QcowErrorKind.InvalidArgument, Path,
                            $"Shrinking '{Path}' from {oldSize} to {newSize} bytes loses data; use -AllowShrink to do it anyway");
                    if (_snapshots.Count > 0)
                        throw new QcowException(QcowErrorKind.InvalidArgument, Path, $"'{Path}' has internal snapshots; an image with snapshots cannot shrink");
                }
                else if (newSize > oldSize && _snapshots.Count > 0 && Header.Version < 3)
                    throw new QcowException(QcowErrorKind.InvalidArgument, Path,
                        $"'{Path}' is a version 2 image with snapshots, whose entries do not record their own disk size; it cannot be resized");
                return newSize;
            }
        }

        /// <summary>Grows (or with allowShrink, shrinks) the virtual size; sizes round up to 512 bytes.</summary>
        public void Resize(long newSize, bool allowShrink)
        {
            lock (_gate)
            {
                ThrowIfReadOnly();
                newSize = CheckResize(newSize, allowShrink);
                long oldSize = Length;
                if (newSize == oldSize) return;
                if (newSize < oldSize) Shrink(newSize);
                else Grow(newSize);
                ResizeBitmaps(newSize);
            }
        }

        private void Grow(long newSize)
        {
            FlushMetadata();
            ulong needed = Qcow2Header.L1EntriesFor((ulong)newSize, ClusterBits, Header.HasExtendedL2);
            if (needed > Qcow2Header.MaxL1Bytes / 8)
                throw new QcowException(QcowErrorKind.InvalidArgument, Path,
                    $"{newSize} bytes need an L1 table of {needed} entries, above QEMU's limit of {Qcow2Header.MaxL1Bytes / 8} for {ClusterSize}-byte clusters");
            if (needed > Header.L1Size)
            {
                // Like QEMU: grow by half again until it fits, so repeated small grows do not move the table each time.
                ulong entries = Math.Max(1, Header.L1Size);
                while (entries < needed) entries = (entries * 3 + 1) / 2;
                entries = Math.Min(entries, (ulong)(Qcow2Header.MaxL1Bytes / 8));
                var newL1 = new ulong[entries];
                Array.Copy(_l1, newL1, _l1.Length);
                long newOffset = AllocateClusters(ClustersFor((long)entries * 8));
                WriteL1Table(newOffset, newL1);
                FlushMetadata();
                SyncFile();
                long oldOffset = (long)Header.L1TableOffset;
                uint oldEntries = Header.L1Size;
                Header.L1TableOffset = (ulong)newOffset;
                Header.L1Size = (uint)entries;
                Header.Size = (ulong)newSize;
                WriteHeader();
                SyncFile();
                _l1 = newL1;
                if (oldEntries > 0) FreeClustersLater(oldOffset, oldEntries * 8L);
                FlushMetadata();
                SyncFile();
                return;
            }
            Header.Size = (ulong)newSize;
            WriteHeader();
            SyncFile();
        }

        private void Shrink(long newSize)
        {
            // Clusters wholly past the new end are released and their entries cleared; L2 tables past it go too.
            int cb = ClusterBits;
            long l2Entries = Header.L2Entries;
            long firstGone = (newSize + ClusterSize - 1) >> cb;
            for (long l1Index = firstGone / l2Entries; l1Index < _l1.Length; l1Index++)
            {
                long l2Offset = L2OffsetOf(_l1[l1Index], l1Index);
                if (l2Offset == 0) continue;
                long firstInTable = l1Index * l2Entries;
                if (firstInTable >= firstGone)
                {
                    var table = (byte[])_l2Cache.Get(l2Offset).Clone();
                    for (int j = 0; j < l2Entries; j++) ReleaseEntry(ReadL2Entry(table, j));
                    FreeClustersLater(l2Offset, ClusterSize);
                    _l1[l1Index] = 0;
                    _l1Dirty = true;
                    continue;
                }
                var (writable, writableOffset) = L2TableForWrite(l1Index);
                for (long c = firstGone; c < firstInTable + l2Entries; c++)
                {
                    int j = (int)(c - firstInTable);
                    var e = ReadL2Entry(writable, j);
                    if (e.Raw == 0 && e.Bitmap == 0) continue;
                    ReleaseEntry(e);
                    SetL2Entry(writable, writableOffset, j, 0, 0);
                }
            }
            FlushMetadata();
            SyncFile();
            Header.Size = (ulong)newSize;
            WriteHeader();
            SyncFile();

            // Give back the file's tail that no cluster uses any more.
            long last = ((_file.Length + ClusterSize - 1) >> cb) - 1;  // a last cluster may be partly written
            while (last > 0 && GetRefcountLocked(last) == 0) last--;
            long end = (last + 1) << cb;
            if (end < _file.Length) _file.SetLength(end);
        }
    }
}
