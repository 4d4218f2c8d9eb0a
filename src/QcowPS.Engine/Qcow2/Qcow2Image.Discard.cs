using System;

namespace QcowPS.Engine.Qcow2
{
    // Discards as QEMU 7.2 does them (qcow2_co_pdiscard; discard_in_l2_slice with full_discard = false).
    public sealed partial class Qcow2Image
    {
        /// <summary>QEMU sizes disks in sectors: a discard reaching the end of a disk whose size is not a multiple of this is not "to the end".</summary>
        private const int DiscardSectorSize = 512;

        /// <summary>
        /// Gives whole clusters back, with qemu-io discard's result: over a backing file every cluster
        /// becomes a zero cluster (v3), so old backing data does not show through; without one, an
        /// allocated cluster becomes a zero cluster (v3) or unallocated (v2), its host cluster freed at the
        /// next metadata flush, and zero or unallocated clusters stay as they are. A v2 image over a
        /// backing file has no zero clusters, so nothing is discarded. Partial clusters are left alone,
        /// except a disk's last, short cluster; a discard only promises that the range need not keep its
        /// contents.
        /// </summary>
        public override void Discard(long offset, long length)
        {
            CheckRange(offset, length);
            lock (_gate)
            {
                ThrowIfReadOnly();
                bool overBacking = Backing != null || !string.IsNullOrEmpty(Header.BackingFile);
                if (Header.Version < 3 && overBacking) return;
                if (Header.HasExternalDataFile && Header.RawExternalData) return;  // the data file must read as the disk
                int cs = ClusterSize;
                long first = (offset + cs - 1) & ~(long)(cs - 1);
                long end = (offset + length) & ~(long)(cs - 1);
                if (offset + length == Length && Length % DiscardSectorSize == 0) end = Length;  // the last, short cluster is whole to the guest
                for (long cluster = first; cluster < end; cluster += cs)
                {
                    long l1Index = (cluster >> ClusterBits) / Header.L2Entries;
                    if (!overBacking && L2OffsetOf(_l1[l1Index], l1Index) == 0) continue;  // no L2 table: already unallocated
                    var (table, l2Offset, l2Index, entry) = EntryForWrite(cluster);
                    bool allocated = entry.IsCompressed || entry.HostOffset != 0;
                    if (!overBacking && !allocated) continue;
                    ulong raw = Header.HasExtendedL2 || Header.Version < 3 ? 0 : L2Entry.ZeroFlag;
                    ulong bitmap = Header.HasExtendedL2 ? L2Entry.AllSubclustersZero : 0;
                    if (entry.Raw == raw && (!Header.HasExtendedL2 || entry.Bitmap == bitmap)) continue;
                    ReleaseEntry(entry);
                    SetL2Entry(table, l2Offset, l2Index, raw, bitmap);
                }
            }
        }

        /// <summary>Whole clusters are zeroed by their L2 entries alone, unless a v2 image must show its backing file.</summary>
        public override bool CanWriteZeroesFast(long offset, long length)
        {
            int cs = ClusterSize;
            bool aligned = (offset & (cs - 1)) == 0 && ((length & (cs - 1)) == 0 || offset + length == Length);
            if (!aligned || (Header.HasExternalDataFile && Header.RawExternalData)) return false;
            return Header.Version >= 3 || Backing == null;
        }
    }
}
