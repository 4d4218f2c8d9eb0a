namespace QcowPS.Engine.Guest.FileSystems.Xfs
{
    /// <summary>
    /// Offsets of the AG free-space header (struct xfs_agf, big-endian), one sector long, in the second
    /// sector of every allocation group.
    /// </summary>
    internal static class XfsAgfLayout
    {
        public const uint Magic = 0x58414746; // "XAGF"
        public const uint Version = 1;
        public const int MagicField = 0;
        public const int VersionNum = 4;
        public const int SeqNo = 8;
        public const int Length = 12;
        public const int BnoRoot = 16;
        public const int CntRoot = 20;
        public const int BnoLevel = 28;
        public const int CntLevel = 32;
        public const int FreeListCount = 48;
        public const int FreeBlocks = 52;
        public const int Longest = 56;
        public const int Uuid = 64;
        public const int Crc = 216;
        /// <summary>The deepest free-space B+tree accepted; XFS's own bound for AG-sized trees is lower.</summary>
        public const int MaxLevels = 9;
    }
}
