namespace QcowPS.Engine.Guest.Partitions
{
    /// <summary>One partition New-QcowPartitionTable is asked to make: its size (null: the rest of the disk), type and GPT name.</summary>
    public sealed class PartitionSpec
    {
        /// <summary>Bytes, a multiple of 512; null for the last partition takes what is left of the disk.</summary>
        public long? Size { get; set; }
        /// <summary>A GPT type GUID or friendly name, an MBR type byte (83, 0x83) or friendly name; null for Linux filesystem / 83.</summary>
        public string Type { get; set; }
        /// <summary>The GPT partition name (up to 36 UTF-16 code units); MBR has none.</summary>
        public string Name { get; set; }
    }
}
