using System;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    // Guest offset -> L1 -> L2 -> host (QEMU: block/qcow2-cluster.c).
    public sealed partial class Qcow2Image
    {
        private byte[] LoadL2Table(long offset, byte[] buffer)
        {
            if (offset <= 0 || (offset & (ClusterSize - 1)) != 0)
                throw QcowException.Corrupt(Path, $"L2 table offset 0x{offset:X} is not a valid cluster offset");
            _file.ReadExactly(offset, buffer, 0, ClusterSize, "L2 table");
            return buffer;
        }

        internal L2Entry ReadL2Entry(byte[] table, int index)
        {
            if (Header.HasExtendedL2)
                return new L2Entry(BigEndian.U64(table, index * 16), BigEndian.U64(table, index * 16 + 8),
                    ClusterBits, true, Header.HasExternalDataFile);
            return new L2Entry(BigEndian.U64(table, index * 8), 0, ClusterBits, false, Header.HasExternalDataFile);
        }

        /// <summary>The L2 table offset an L1 entry names (0 when unallocated), checked for alignment.</summary>
        private long L2OffsetOf(ulong l1Entry, long l1Index)
        {
            long l2Offset = (long)(l1Entry & L1OffsetMask);
            if ((l2Offset & (ClusterSize - 1)) != 0)
                throw QcowException.Corrupt(Path, $"L1 entry {l1Index} points to an unaligned L2 table offset 0x{l2Offset:X}");
            return l2Offset;
        }

        /// <summary>Rejects entries no valid image contains, before anything is read through them.</summary>
        private void ValidateEntry(L2Entry e, long l2Offset, int l2Index)
        {
            if (e.IsCompressed)
            {
                if (Header.HasExternalDataFile)
                    throw QcowException.Corrupt(Path, $"Compressed cluster in an image with an external data file (L2 table 0x{l2Offset:X}, index {l2Index})");
                if (Header.HasExtendedL2 && e.Bitmap != 0)
                    throw QcowException.Corrupt(Path, $"Compressed cluster with a non-zero subcluster bitmap (L2 table 0x{l2Offset:X}, index {l2Index})");
                return;
            }
            long host = (long)(e.Raw & L2Entry.OffsetMask);
            if ((host & (ClusterSize - 1)) != 0)
                throw QcowException.Corrupt(Path, $"Cluster allocation offset 0x{host:X} unaligned (L2 table 0x{l2Offset:X}, index {l2Index})");
            if (Header.HasExtendedL2)
            {
                uint allocated = (uint)e.Bitmap, zero = (uint)(e.Bitmap >> 32);
                if ((allocated & zero) != 0)
                    throw QcowException.Corrupt(Path, $"Subclusters both allocated and zero (bitmap 0x{e.Bitmap:X16}, L2 table 0x{l2Offset:X}, index {l2Index})");
                if (allocated != 0 && e.Type == ClusterType.Unallocated)
                    throw QcowException.Corrupt(Path, $"Allocated subclusters without a host cluster (L2 table 0x{l2Offset:X}, index {l2Index})");
            }
        }

        /// <summary>
        /// The run at offset under the given L1 table: merged across clusters (and subclusters) of the
        /// same type, and for data only while the host offsets stay contiguous. Never crosses an L2
        /// table's range, and compressed runs are one cluster at most.
        /// </summary>
        private DiskExtent Map(ulong[] l1, long offset, long maxLength)
        {
            int cb = ClusterBits;
            long cs = 1L << cb;
            long l2Entries = Header.L2Entries;
            long clusterIndex = offset >> cb;
            long l1Index = clusterIndex / l2Entries;
            long tableStart = (l1Index * l2Entries) << cb;
            long requested = maxLength;
            maxLength = Math.Min(maxLength, tableStart + Header.BytesPerL2Table - offset);
            var result = new DiskExtent { Offset = offset, Length = maxLength, Type = ClusterType.Unallocated, HostOffset = -1 };
            if (maxLength <= 0) return result;

            ulong l1Entry = l1Index < l1.Length ? l1[l1Index] : 0;
            long l2Offset = L2OffsetOf(l1Entry, l1Index);
            if (l2Offset == 0)
            {
                // Following L1 entries without an L2 table join the run, so that a sparse exabyte disk
                // is a few extents for conversion and comparison, not millions.
                long runEnd = offset + maxLength;
                for (long next = l1Index + 1; runEnd < offset + requested; next++)
                {
                    if (next < l1.Length && (l1[next] & L1OffsetMask) != 0) break;
                    runEnd = Math.Min(offset + requested, runEnd + Header.BytesPerL2Table);
                }
                result.Length = runEnd - offset;
                return result;
            }
            byte[] table = _l2Cache.Get(l2Offset);

            bool extended = Header.HasExtendedL2;
            int unitBits = extended ? cb - 5 : cb;
            long end = offset + maxLength;
            long pos = offset;
            long lastValidated = -1;
            bool first = true;
            while (pos < end)
            {
                long ci = pos >> cb;
                int l2Index = (int)(ci - l1Index * l2Entries);
                var e = ReadL2Entry(table, l2Index);
                if (ci != lastValidated)
                {
                    ValidateEntry(e, l2Offset, l2Index);
                    lastValidated = ci;
                }
                var type = extended ? e.SubclusterType((int)((pos >> unitBits) & 31)) : e.Type;
                long inCluster = pos & (cs - 1);
                if (first)
                {
                    first = false;
                    result.Type = type;
                    if (type == ClusterType.Compressed)
                    {
                        result.HostOffset = e.CompressedOffset;
                        result.L2Raw = e.Raw;
                        pos = Math.Min(end, (ci + 1) << cb);
                        break;
                    }
                    if (type == ClusterType.Normal || type == ClusterType.ZeroAllocated)
                        result.HostOffset = e.HostOffset + inCluster;
                }
                else
                {
                    if (type != result.Type) break;
                    if (type == ClusterType.Normal && e.HostOffset + inCluster != result.HostOffset + (pos - offset)) break;
                }
                long unitEnd = ((pos >> unitBits) + 1) << unitBits;
                pos = Math.Min(end, unitEnd);
            }
            result.Length = pos - offset;
            return result;
        }
    }
}
