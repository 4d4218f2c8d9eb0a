namespace QcowPS.Engine.Qcow2
{
    /// <summary>
    /// Where each field of the qcow2 header lies (spec: "Header", "Header extensions"), every offset
    /// built from the one before it and that field's length, as System.Formats.Tar's FieldLocations
    /// does: the reader, the writer and the hostile-image tests all use these, so there is one copy.
    /// All fields are big-endian.
    /// </summary>
    internal static class Qcow2HeaderLayout
    {
        private const int U8 = 1, U32 = 4, U64 = 8;

        // Version 2 and 3.
        public const int Magic = 0;
        public const int Version = Magic + U32;                                   // 4
        public const int BackingFileOffset = Version + U32;                       // 8
        public const int BackingFileSize = BackingFileOffset + U64;               // 16
        public const int ClusterBits = BackingFileSize + U32;                     // 20
        public const int Size = ClusterBits + U32;                                // 24
        public const int CryptMethod = Size + U64;                                // 32
        public const int L1Size = CryptMethod + U32;                              // 36
        public const int L1TableOffset = L1Size + U32;                            // 40
        public const int RefcountTableOffset = L1TableOffset + U64;               // 48
        public const int RefcountTableClusters = RefcountTableOffset + U64;       // 56
        public const int SnapshotCount = RefcountTableClusters + U32;             // 60
        public const int SnapshotsOffset = SnapshotCount + U32;                   // 64
        /// <summary>Length of a version 2 header.</summary>
        public const int V2End = SnapshotsOffset + U64;                           // 72

        // Version 3 only.
        public const int IncompatibleFeatures = V2End;                            // 72
        public const int CompatibleFeatures = IncompatibleFeatures + U64;         // 80
        public const int AutoclearFeatures = CompatibleFeatures + U64;            // 88
        public const int RefcountOrder = AutoclearFeatures + U64;                 // 96
        public const int HeaderLength = RefcountOrder + U32;                      // 100
        /// <summary>The smallest version 3 header: header_length is at least this.</summary>
        public const int V3End = HeaderLength + U32;                              // 104

        // Optional version 3 fields, present when header_length covers them.
        public const int CompressionType = V3End;                                 // 104
        /// <summary>compression_type is one byte, padded to a multiple of 8: fields past this are unknown to us.</summary>
        public const int KnownFieldsEnd = CompressionType + U8 + 7;               // 112

        // A header extension: type, length, then the data padded to a multiple of 8.
        public const int ExtensionType = 0;
        public const int ExtensionLength = ExtensionType + U32;                   // 4
        public const int ExtensionData = ExtensionLength + U32;                   // 8
        public const int ExtensionAlignment = 8;

        // One entry of the feature name table extension: type, bit number, name (NUL-padded).
        public const int FeatureNameType = 0;
        public const int FeatureNameBit = FeatureNameType + U8;                   // 1
        public const int FeatureNameText = FeatureNameBit + U8;                   // 2
        public const int FeatureNameTextLength = 46;
        public const int FeatureNameEntryLength = FeatureNameText + FeatureNameTextLength;  // 48

        // The bitmaps extension: nb_bitmaps, reserved, bitmap_directory_size, bitmap_directory_offset.
        public const int BitmapsCount = 0;
        public const int BitmapsDirectorySize = BitmapsCount + U32 + U32;         // 8
        public const int BitmapsDirectoryOffset = BitmapsDirectorySize + U64;     // 16
        public const int BitmapsExtensionLength = BitmapsDirectoryOffset + U64;   // 24

        // The full disk encryption extension: offset and length of the encryption header.
        public const int EncryptionHeaderOffset = 0;
        public const int EncryptionHeaderLength = EncryptionHeaderOffset + U64;   // 8
        public const int EncryptionExtensionLength = EncryptionHeaderLength + U64; // 16
    }
}
