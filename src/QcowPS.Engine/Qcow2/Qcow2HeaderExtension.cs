namespace QcowPS.Engine.Qcow2
{
    /// <summary>A header extension as stored, with its data kept for rewriting.</summary>
    public sealed class Qcow2HeaderExtension
    {
        public const uint End = 0;
        public const uint BackingFormat = 0xE2792ACA;
        public const uint FeatureNameTable = 0x6803F857;
        public const uint Bitmaps = 0x23852875;
        public const uint FullDiskEncryption = 0x0537BE77;
        public const uint ExternalDataFile = 0x44415441;

        public uint Type { get; set; }
        public byte[] Data { get; set; }
        /// <summary>Where the extension header starts in the file.</summary>
        public long Offset { get; set; }

        public string Name
        {
            get
            {
                switch (Type)
                {
                    case BackingFormat: return "BackingFormat";
                    case FeatureNameTable: return "FeatureNameTable";
                    case Bitmaps: return "Bitmaps";
                    case FullDiskEncryption: return "FullDiskEncryption";
                    case ExternalDataFile: return "ExternalDataFile";
                    default: return $"Unknown(0x{Type:X8})";
                }
            }
        }

        public override string ToString() => $"{Name} ({Data.Length} bytes)";
    }
}
