using System;
using System.Collections.Generic;
using System.Text;
using QcowPS.Engine.Guest;
using QcowPS.Engine.Guest.FileSystems.Xfs;
using Xunit;
using static System.Buffers.Binary.BinaryPrimitives;
using B = QcowPS.Engine.Guest.FileSystems.Xfs.XfsBtreeLayout;
using L = QcowPS.Engine.Guest.FileSystems.Xfs.XfsLogLayout;

namespace QcowPS.Engine.Tests.Guest
{
    /// <summary>
    /// The parts of XFS support that real images made by mkfs.xfs do not reach (the Pester tests in
    /// Optimize-QcowImage.Xfs.Tests.ps1 cover those): logs that wrapped, torn writes, and hostile
    /// free-space trees built by hand, on in-memory bytes.
    /// </summary>
    public class XfsFreeSpaceTests
    {
        private const int BlockSize = 4096;
        private static readonly byte[] FsUuid = Guid.Parse("5bbf44a0-dc14-43c3-9330-d76a518653c7").ToByteArray();

        [Fact]
        public void Crc32_matches_the_standard_check_values()
        {
            var data = Encoding.ASCII.GetBytes("123456789");
            Assert.Equal(0xE3069283u, Crc32.Castagnoli.Compute(data, 0, data.Length));
            // The same code in IEEE's polynomial (GPT's CRC) gives zlib's check value.
            Assert.Equal(0xCBF43926u, Crc32.Ieee.Compute(data, 0, data.Length));
        }

        // --- the log ---------------------------------------------------------------------------------------

        /// <summary>A log of n basic blocks, every block stamped with cycle `rest` (0: never written).</summary>
        private static byte[] Log(int blocks, uint rest = 0)
        {
            var log = new byte[blocks * L.BasicBlock];
            for (int b = 0; b < blocks; b++) WriteUInt32BigEndian(log.AsSpan(b * L.BasicBlock), rest);
            return log;
        }

        /// <summary>Writes a record at block `at`: one header block, then data blocks, all stamped with cycle (data wrapping past the end gets cycle + 1, as xlog_sync does).</summary>
        private static void Record(byte[] log, int at, uint cycle, int dataBlocks, uint ops = 1, byte flags = L.UnmountTrans, int headerBlocks = 1)
        {
            int blocks = log.Length / L.BasicBlock;
            // Extended header blocks (v2 logs with records over 32 KiB) start with the cycle, like data blocks.
            for (int x = 1; x < headerBlocks; x++)
            {
                log.AsSpan((at + x) * L.BasicBlock, L.BasicBlock).Clear();
                WriteUInt32BigEndian(log.AsSpan((at + x) * L.BasicBlock), cycle);
            }
            var h = log.AsSpan(at * L.BasicBlock, L.BasicBlock);
            h.Clear();
            WriteUInt32BigEndian(h.Slice(L.MagicField), L.HeaderMagic);
            WriteUInt32BigEndian(h.Slice(L.Cycle), cycle);
            WriteUInt32BigEndian(h.Slice(L.Version), L.Version2);
            WriteUInt32BigEndian(h.Slice(L.Length), (uint)(dataBlocks * L.BasicBlock));
            WriteUInt32BigEndian(h.Slice(L.NumLogOps), ops);
            WriteUInt32BigEndian(h.Slice(L.Size), (uint)(headerBlocks * L.HeaderCycleSize));
            FsUuid.CopyTo(h.Slice(L.FsUuid));
            for (int i = 1; i <= dataBlocks; i++)
            {
                int b = (at + headerBlocks - 1 + i) % blocks;
                var d = log.AsSpan(b * L.BasicBlock, L.BasicBlock);
                d.Clear();
                WriteUInt32BigEndian(d, at + headerBlocks - 1 + i >= blocks ? cycle + 1 : cycle);
                if (i == 1) d[L.OpFlags] = flags;
            }
        }

        private static string WhyNotClean(byte[] log) =>
            XfsLog.WhyNotClean((at, buffer, count) => Array.Copy(log, at, buffer, 0, count), 0, log.Length / L.BasicBlock, FsUuid);

        [Fact]
        public void A_log_as_mkfs_leaves_it_is_clean()
        {
            var log = Log(1024);
            Record(log, 0, 1, 1);
            Assert.Null(WhyNotClean(log));
        }

        [Fact]
        public void A_log_whose_last_record_is_not_an_unmount_record_needs_recovery()
        {
            var log = Log(1024);
            Record(log, 0, 1, 1, flags: 0);
            Assert.Contains("is not an unmount record", WhyNotClean(log));
        }

        [Fact]
        public void An_unmount_record_followed_by_a_later_record_needs_recovery()
        {
            var log = Log(1024);
            Record(log, 0, 1, 1);
            Record(log, 2, 1, 3, flags: 0);
            Assert.Contains("needs recovery", WhyNotClean(log));
        }

        [Fact]
        public void A_record_with_more_than_one_operation_is_not_a_clean_unmount()
        {
            var log = Log(1024);
            Record(log, 0, 1, 1, ops: 2);
            Assert.Contains("is not an unmount record", WhyNotClean(log));
        }

        [Fact]
        public void An_unmount_record_that_wraps_past_the_end_of_the_log_is_clean()
        {
            // Cycle 5 was written up to the end; the unmount record starts 2 blocks before the end and its
            // last data block lands at block 0 in cycle 6: the head is block 1.
            var log = Log(64, 5);
            Record(log, 62, 5, 2); // data blocks 63 (cycle 5) and 0 (cycle 6)
            Assert.Null(WhyNotClean(log));
        }

        [Fact]
        public void An_unmount_record_that_ends_exactly_at_the_end_of_the_log_is_clean()
        {
            var log = Log(64, 3);
            Record(log, 62, 3, 1);
            Assert.Null(WhyNotClean(log));
        }

        [Fact]
        public void A_record_with_extended_headers_is_measured_from_after_all_its_header_blocks()
        {
            // h_size 96 KiB: three header blocks, then the unmount operation (not in the second header block).
            var log = Log(1024);
            Record(log, 0, 1, 1, headerBlocks: 3);
            Assert.Null(WhyNotClean(log));
            log[L.BasicBlock + L.OpFlags] = L.UnmountTrans;
            log[3 * L.BasicBlock + L.OpFlags] = 0;
            Assert.Contains("is not an unmount record", WhyNotClean(log));
        }

        [Fact]
        public void A_second_change_of_cycle_after_the_head_is_a_torn_write()
        {
            var log = Log(1024);
            Record(log, 0, 1, 1);
            WriteUInt32BigEndian(log.AsSpan(500 * L.BasicBlock), 1);
            Assert.Contains("changes again at log block 500", WhyNotClean(log));
        }

        [Fact]
        public void A_cycle_that_jumps_by_more_than_one_needs_recovery()
        {
            var log = Log(1024, 3);
            Record(log, 0, 5, 1);
            Assert.Contains("goes from 5 to 3", WhyNotClean(log));
        }

        [Fact]
        public void A_log_never_written_is_not_proof_of_anything()
        {
            Assert.Contains("never been written", WhyNotClean(Log(1024)));
        }

        [Fact]
        public void A_record_of_another_file_system_is_not_its_unmount_record()
        {
            var log = Log(1024);
            Record(log, 0, 1, 1);
            log[L.FsUuid] ^= 0xFF;
            Assert.Contains("UUID differs", WhyNotClean(log));
        }

        // --- the free-space tree ---------------------------------------------------------------------------

        /// <summary>A v5 bnobt block of AG 0, CRC and all.</summary>
        private static byte[] Block(uint at, int level, uint left, uint right, params uint[] entries)
        {
            var b = new byte[BlockSize];
            WriteUInt32BigEndian(b.AsSpan(B.MagicField), B.BnoMagicV5);
            WriteUInt16BigEndian(b.AsSpan(B.Level), (ushort)level);
            WriteUInt32BigEndian(b.AsSpan(B.LeftSibling), left);
            WriteUInt32BigEndian(b.AsSpan(B.RightSibling), right);
            WriteUInt64BigEndian(b.AsSpan(B.BlockNumber), at * (BlockSize / 512));
            FsUuid.CopyTo(b, B.Uuid);
            if (level == 0)
            {
                WriteUInt16BigEndian(b.AsSpan(B.NumRecs), (ushort)(entries.Length / 2));
                for (int i = 0; i < entries.Length / 2; i++)
                {
                    WriteUInt32BigEndian(b.AsSpan(B.RecordOffset(true, i) + B.RecordStartBlock), entries[2 * i]);
                    WriteUInt32BigEndian(b.AsSpan(B.RecordOffset(true, i) + B.RecordBlockCount), entries[2 * i + 1]);
                }
            }
            else
            {
                WriteUInt16BigEndian(b.AsSpan(B.NumRecs), (ushort)entries.Length);
                for (int i = 0; i < entries.Length; i++) WriteUInt32BigEndian(b.AsSpan(B.PointerOffset(BlockSize, true, i)), entries[i]);
            }
            Sign(b);
            return b;
        }

        private static void Sign(byte[] b) => WriteUInt32LittleEndian(b.AsSpan(B.Crc), Crc32.Castagnoli.Compute(b, 0, BlockSize, B.Crc));

        private static (List<(uint, uint)> records, int reads) Walk(Dictionary<uint, byte[]> blocks, uint root, uint levels)
        {
            int reads = 0;
            var tree = new XfsFreeSpaceTree(at => { reads++; return blocks.TryGetValue(at, out var b) ? b : new byte[BlockSize]; },
                BlockSize, true, 0, 1000, 0, FsUuid, what => new QcowException(QcowErrorKind.Corrupt, what));
            return (tree.Records("bnobt", B.BnoMagicV5, root, levels), reads);
        }

        [Fact]
        public void A_two_level_tree_gives_its_leaves_records_in_order()
        {
            var blocks = new Dictionary<uint, byte[]>
            {
                [10] = Block(10, 1, B.NullBlock, B.NullBlock, 11, 12),
                [11] = Block(11, 0, B.NullBlock, 12, 100, 5, 200, 7),
                [12] = Block(12, 0, 11, B.NullBlock, 300, 9),
            };
            var (records, _) = Walk(blocks, 10, 2);
            Assert.Equal(new List<(uint, uint)> { (100, 5), (200, 7), (300, 9) }, records);
        }

        [Fact]
        public void A_node_pointing_back_to_itself_is_refused_before_it_is_read_again()
        {
            var blocks = new Dictionary<uint, byte[]> { [10] = Block(10, 1, B.NullBlock, B.NullBlock, 11, 10) };
            var e = Assert.Throws<QcowException>(() => Walk(blocks, 10, 2));
            Assert.Contains("reaches block 10 twice", e.Message);
        }

        [Fact]
        public void Two_pointers_to_one_leaf_are_refused()
        {
            var blocks = new Dictionary<uint, byte[]>
            {
                [10] = Block(10, 1, B.NullBlock, B.NullBlock, 11, 11),
                [11] = Block(11, 0, B.NullBlock, B.NullBlock, 100, 5),
            };
            var e = Assert.Throws<QcowException>(() => Walk(blocks, 10, 2));
            Assert.Contains("reaches block 11 twice", e.Message);
        }

        [Fact]
        public void A_leaf_claiming_more_records_than_fit_is_refused_without_reading_them()
        {
            var leaf = Block(10, 0, B.NullBlock, B.NullBlock, 100, 5);
            WriteUInt16BigEndian(leaf.AsSpan(B.NumRecs), ushort.MaxValue);
            Sign(leaf);
            var e = Assert.Throws<QcowException>(() => Walk(new Dictionary<uint, byte[]> { [10] = leaf }, 10, 1));
            Assert.Contains($"claims 65535 records; at most {B.MaxRecords(BlockSize, true, true)} fit", e.Message);
        }

        [Fact]
        public void A_block_whose_crc_is_wrong_is_refused()
        {
            var leaf = Block(10, 0, B.NullBlock, B.NullBlock, 100, 5);
            leaf[B.RecordOffset(true, 0) + B.RecordBlockCount + 3] ^= 1;
            var e = Assert.Throws<QcowException>(() => Walk(new Dictionary<uint, byte[]> { [10] = leaf }, 10, 1));
            Assert.Contains("fails its CRC check", e.Message);
        }

        [Fact]
        public void A_pointer_outside_the_ag_is_refused()
        {
            var blocks = new Dictionary<uint, byte[]> { [10] = Block(10, 1, B.NullBlock, B.NullBlock, 5000) };
            var e = Assert.Throws<QcowException>(() => Walk(blocks, 10, 2));
            Assert.Contains("points to block 5000, outside the AG", e.Message);
        }

        [Fact]
        public void An_absurd_depth_is_refused_before_any_block_is_read()
        {
            var e = Assert.Throws<QcowException>(() => Walk(new Dictionary<uint, byte[]>(), 10, 200));
            Assert.Contains("claims 200 levels", e.Message);
        }

        [Fact]
        public void A_leaf_where_a_node_should_be_is_refused()
        {
            var blocks = new Dictionary<uint, byte[]> { [10] = Block(10, 0, B.NullBlock, B.NullBlock, 100, 5) };
            var e = Assert.Throws<QcowException>(() => Walk(blocks, 10, 2));
            Assert.Contains("is at level 0, expected 1", e.Message);
        }

        [Fact]
        public void A_wide_hostile_node_ends_at_its_first_bad_child()
        {
            // A root naming 298 blocks of the AG, none of them a bnobt block: the first one read ends the walk.
            var pointers = new List<uint>();
            for (uint b = 1; b < 300; b++) if (b != 10) pointers.Add(b);
            var blocks = new Dictionary<uint, byte[]> { [10] = Block(10, 1, B.NullBlock, B.NullBlock, pointers.ToArray()) };
            var e = Assert.Throws<QcowException>(() => Walk(blocks, 10, 2));
            Assert.Contains("block 1 has magic 00000000", e.Message);
        }
    }
}
