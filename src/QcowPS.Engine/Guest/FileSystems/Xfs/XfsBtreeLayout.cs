namespace QcowPS.Engine.Guest.FileSystems.Xfs
{
    /// <summary>
    /// A short-form (AG-relative) B+tree block of the free-space trees (struct xfs_btree_block, big-endian):
    /// the header, then records (leaf) or keys and pointers (node). Records and keys are both
    /// (startblock, blockcount); pointers are AG block numbers.
    /// </summary>
    internal static class XfsBtreeLayout
    {
        public const uint BnoMagicV5 = 0x41423342; // "AB3B"
        public const uint BnoMagicV4 = 0x41425442; // "ABTB"
        public const uint CntMagicV5 = 0x41423343; // "AB3C"
        public const uint CntMagicV4 = 0x41425443; // "ABTC"

        public const int MagicField = 0;
        public const int Level = 4;
        public const int NumRecs = 6;
        public const int LeftSibling = 8;
        public const int RightSibling = 12;
        /// <summary>v5: the block's own address in 512-byte units.</summary>
        public const int BlockNumber = 16;
        public const int Uuid = 32;
        /// <summary>v5: the AG the block belongs to.</summary>
        public const int Owner = 48;
        public const int Crc = 52;
        public const int HeaderV4 = 16;
        public const int HeaderV5 = 56;

        public const int RecordSize = 8;
        public const int RecordStartBlock = 0;
        public const int RecordBlockCount = 4;
        public const int KeySize = 8;
        public const int PointerSize = 4;
        /// <summary>A sibling pointer that points nowhere.</summary>
        public const uint NullBlock = 0xFFFFFFFF;

        public static int Header(bool v5) => v5 ? HeaderV5 : HeaderV4;
        /// <summary>How many records (leaf) or key/pointer pairs (node) fit a block.</summary>
        public static int MaxRecords(int blockSize, bool v5, bool leaf) =>
            (blockSize - Header(v5)) / (leaf ? RecordSize : KeySize + PointerSize);
        /// <summary>Where record (or key) i (from 0) starts.</summary>
        public static int RecordOffset(bool v5, int i) => Header(v5) + i * RecordSize;
        /// <summary>Where pointer i (from 0) of a node starts: after the room for all keys.</summary>
        public static int PointerOffset(int blockSize, bool v5, int i) =>
            Header(v5) + MaxRecords(blockSize, v5, false) * KeySize + i * PointerSize;
    }
}
