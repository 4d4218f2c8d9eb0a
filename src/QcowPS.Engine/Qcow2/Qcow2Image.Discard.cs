using System;

namespace QcowPS.Engine.Qcow2
{
    // Discards (QEMU: qcow2_co_pdiscard / discard_in_l2_slice with full_discard = false).
    public sealed partial class Qcow2Image
    {
        /// <summary>
        /// Gives whole clusters back: without backing data beneath, a cluster becomes unallocated (its host
        /// cluster freed at the next metadata flush); over a backing file it becomes a zero cluster (v3), so
        /// the old backing data does not show through. Partial clusters are left alone, as QEMU does; a
        /// discard only promises that the range need not keep its contents.
        /// </summary>
        public override void Discard(long offset, long length)
        {
            CheckRange(offset, length);
            lock (_gate)
            {
                ThrowIfReadOnly();
                int cs = ClusterSize;
                long first = (offset + cs - 1) & ~(long)(cs - 1);
                long end = (offset + length) & ~(long)(cs - 1);
                if (offset + length == Length) end = offset + length;  // the last, partial cluster of the disk is whole to the guest
                for (long cluster = first; cluster < end; cluster += cs)
                {
                    if (HasBackingData(cluster))
                    {
                        if (Header.Version >= 3) ZeroWholeCluster(cluster);
                        continue;
                    }
                    if (Header.HasExternalDataFile && Header.RawExternalData) continue;  // the data file must read as the disk
                    long l1Index = (cluster >> ClusterBits) / Header.L2Entries;
                    if (L2OffsetOf(_l1[l1Index], l1Index) == 0) continue;  // no L2 table: already unallocated
                    var (table, l2Offset, l2Index, entry) = EntryForWrite(cluster);
                    if (entry.Raw == 0 && !Header.HasExtendedL2) continue;
                    ReleaseEntry(entry);
                    SetL2Entry(table, l2Offset, l2Index, 0, 0);
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
