namespace QcowPS.Engine.Guest.FileSystems.Xfs
{
    /// <summary>
    /// The XFS log's on-disk records (struct xlog_rec_header and xlog_op_header, big-endian). The log is
    /// addressed in 512-byte basic blocks; every block's first word is its cycle number (a record
    /// header carries the magic there and its cycle in h_cycle).
    /// </summary>
    internal static class XfsLogLayout
    {
        public const int BasicBlock = 512;
        public const uint HeaderMagic = 0xFEEDBABE;
        public const int MagicField = 0;
        public const int Cycle = 4;
        public const int Version = 8;
        public const int Length = 12;
        public const int Lsn = 16;
        public const int TailLsn = 24;
        public const int Crc = 32;
        public const int NumLogOps = 40;
        public const int FsUuid = 304;
        public const int Size = 320;
        /// <summary>h_version bit of a v2 log, whose records may have extended headers.</summary>
        public const uint Version2 = 2;
        /// <summary>Bytes of record covered by one header block's cycle data (XLOG_HEADER_CYCLE_SIZE).</summary>
        public const int HeaderCycleSize = 32768;
        /// <summary>The largest log record (XLOG_MAX_RECORD_BSIZE).</summary>
        public const int MaxRecordSize = 256 * 1024;
        /// <summary>oh_flags in the operation header that starts a record's first data block.</summary>
        public const int OpFlags = 9;
        /// <summary>oh_flags bit of the unmount record (XLOG_UNMOUNT_TRANS).</summary>
        public const byte UnmountTrans = 0x20;
    }
}
