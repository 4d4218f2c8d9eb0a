namespace QcowPS.Engine.Guest.FileSystems.Xfs
{
    /// <summary>
    /// Offsets of the XFS superblock fields QcowPS reads (struct xfs_dsb, big-endian, at byte 0 of the
    /// file system and of every AG; only AG 0's is read), and the feature bits it understands.
    /// </summary>
    internal static class XfsSuperblockLayout
    {
        public const uint Magic = 0x58465342; // "XFSB"
        public const int MagicField = 0;
        public const int BlockSize = 4;
        public const int DataBlocks = 8;
        public const int RealtimeBlocks = 16;
        public const int Uuid = 32;
        public const int LogStart = 48;
        public const int AgBlocks = 84;
        public const int AgCount = 88;
        public const int LogBlocks = 96;
        public const int VersionNum = 100;
        public const int SectorSize = 102;
        public const int Name = 108;
        public const int NameLength = 12;
        public const int BlockLog = 120;
        public const int AgBlockLog = 124;
        public const int InProgress = 126;
        public const int FreeDataBlocks = 144;
        public const int Features2 = 200;
        public const int FeaturesCompat = 208;
        public const int FeaturesRoCompat = 212;
        public const int FeaturesIncompat = 216;
        public const int FeaturesLogIncompat = 220;
        public const int Crc = 224;
        public const int MetaUuid = 248;

        /// <summary>The low nibble of sb_versionnum.</summary>
        public const int VersionMask = 0xF;
        public const int Version4 = 4;
        public const int Version5 = 5;
        /// <summary>sb_versionnum bit saying sb_features2 is in use.</summary>
        public const int VersionMoreBits = 0x8000;

        /// <summary>sb_features2 bits of a v4 file system that do not change the free-space trees: lazy-count, attr2, projid32bit, ftype.</summary>
        public const uint Features2Understood = 0x2 | 0x8 | 0x80 | 0x200;
        /// <summary>sb_features2 bit of v5 (CRC) file systems.</summary>
        public const uint Features2Crc = 0x100;
        /// <summary>v5 read-only compatible features: finobt, rmapbt, reflink, inobtcount (the bnobt means the same with all of them).</summary>
        public const uint RoCompatUnderstood = 0x1 | 0x2 | 0x4 | 0x8;
        /// <summary>v5 incompatible feature: the metadata UUID is in sb_meta_uuid, not sb_uuid.</summary>
        public const uint IncompatMetaUuid = 0x4;
        /// <summary>v5 incompatible feature: xfs_repair must run before the next mount.</summary>
        public const uint IncompatNeedsRepair = 0x10;
        /// <summary>v5 incompatible features understood: ftype, sparse inodes, meta_uuid, bigtime, nrext64, exchange-range, parent pointers.</summary>
        public const uint IncompatUnderstood = 0x1 | 0x2 | IncompatMetaUuid | 0x8 | 0x20 | 0x40 | 0x80;
        /// <summary>v5 log-incompatible features understood: logged extended attributes.</summary>
        public const uint LogIncompatUnderstood = 0x1;
    }
}
