using System;
using static System.Buffers.Binary.BinaryPrimitives;
using L = QcowPS.Engine.Guest.FileSystems.Xfs.XfsLogLayout;

namespace QcowPS.Engine.Guest.FileSystems.Xfs
{
    /// <summary>
    /// Decides whether an internal XFS log is clean, by the rule of xfsprogs' xlog_find_tail and
    /// xlog_check_unmount_rec: the head is where the cycle numbers drop; the last record before the head
    /// must be a single-operation unmount record that ends exactly at the head. Stricter than the kernel
    /// where that costs nothing: every block's cycle is read, and any pattern other than one clean step
    /// (blocks before the head in cycle C, all after it in C − 1) is not proof of a clean log.
    /// </summary>
    internal static class XfsLog
    {
        private const int ChunkBlocks = 2048;

        /// <summary>Null when the log is provably clean; otherwise why not.</summary>
        /// <param name="read">Reads count bytes of the volume at a byte offset.</param>
        /// <param name="start">The byte offset of the log in the volume.</param>
        /// <param name="blocks">The log's length in 512-byte basic blocks.</param>
        public static string WhyNotClean(Action<long, byte[], int> read, long start, long blocks, byte[] fsUuid)
        {
            if (blocks < 2) return $"its log of {blocks} basic blocks is too small to hold an unmount record";
            long head = -1, lastHeaderBeforeHead = -1, lastHeader = -1;
            uint firstCycle = 0, headCycle = 0;
            var chunk = new byte[ChunkBlocks * L.BasicBlock];
            for (long at = 0; at < blocks; at += ChunkBlocks)
            {
                int n = (int)Math.Min(ChunkBlocks, blocks - at);
                read(start + at * L.BasicBlock, chunk, n * L.BasicBlock);
                for (int i = 0; i < n; i++)
                {
                    long b = at + i;
                    uint first = U32(chunk, i * L.BasicBlock);
                    bool isHeader = first == L.HeaderMagic;
                    uint cycle = isHeader ? U32(chunk, i * L.BasicBlock + L.Cycle) : first;
                    if (b == 0)
                    {
                        if (cycle == 0) return "its log has never been written (cycle 0 at its start)";
                        firstCycle = cycle;
                    }
                    else if (head < 0 && cycle != firstCycle)
                    {
                        if (cycle != firstCycle - 1) return $"the XFS log needs recovery: the cycle number goes from {firstCycle} to {cycle} at log block {b}";
                        head = b;
                        headCycle = cycle;
                        lastHeaderBeforeHead = lastHeader;
                    }
                    else if (head >= 0 && cycle != headCycle)
                        return $"the XFS log needs recovery: the cycle number changes again at log block {b} (a torn or partial write)";
                    if (isHeader) lastHeader = b;
                }
            }
            // All blocks in one cycle: the log has just wrapped, and the head is block 0.
            if (head < 0) { head = 0; lastHeaderBeforeHead = -1; }
            // A record can wrap past the end of the log, so its header may lie after the head.
            long record = lastHeaderBeforeHead >= 0 ? lastHeaderBeforeHead : lastHeader;
            if (record < 0) return "the XFS log needs recovery: no log record header was found";

            var header = new byte[L.BasicBlock];
            read(start + record * L.BasicBlock, header, L.BasicBlock);
            uint version = U32(header, L.Version), length = U32(header, L.Length), size = U32(header, L.Size);
            if (version != 1 && version != L.Version2) return $"the XFS log needs recovery: its last record (block {record}) has unknown version {version}";
            if (length > L.MaxRecordSize) return $"the XFS log needs recovery: its last record (block {record}) claims {length} bytes";
            if (!IsZero(header, L.FsUuid, 16) && !SameBytes(header, L.FsUuid, fsUuid))
                return $"the XFS log needs recovery: its last record (block {record}) belongs to another file system (UUID differs)";
            long headerBlocks = (version & L.Version2) != 0 && size > L.HeaderCycleSize
                ? Math.Min((size + L.HeaderCycleSize - 1) / L.HeaderCycleSize, L.MaxRecordSize / L.HeaderCycleSize) : 1;
            long end = (record + headerBlocks + (length + L.BasicBlock - 1) / L.BasicBlock) % blocks;
            if (end != head || U32(header, L.NumLogOps) != 1)
                return $"the XFS log needs recovery: its last record (block {record}) is not an unmount record ending at the head (block {head})";
            var data = new byte[L.BasicBlock];
            read(start + (record + headerBlocks) % blocks * L.BasicBlock, data, L.BasicBlock);
            if ((data[L.OpFlags] & L.UnmountTrans) == 0)
                return $"the XFS log needs recovery: its last record (block {record}) is not an unmount record";
            return null;
        }

        private static uint U32(byte[] b, int o) => ReadUInt32BigEndian(new ReadOnlySpan<byte>(b, o, 4));

        private static bool IsZero(byte[] b, int o, int n)
        {
            for (int i = 0; i < n; i++) if (b[o + i] != 0) return false;
            return true;
        }

        private static bool SameBytes(byte[] b, int o, byte[] other)
        {
            for (int i = 0; i < other.Length; i++) if (b[o + i] != other[i]) return false;
            return true;
        }
    }
}
