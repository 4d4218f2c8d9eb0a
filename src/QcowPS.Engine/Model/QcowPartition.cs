namespace QcowPS
{
    /// <summary>One partition of a guest disk, from Get-QcowPartition (sfdisk --json / sgdisk -i as an object).</summary>
    public sealed class QcowPartition
    {
        public string Path { get; set; }
        /// <summary>Gpt or Mbr; None when the disk has no table and the whole disk is looked at as one.</summary>
        public string Table { get; set; }
        public int Number { get; set; }
        /// <summary>A friendly name of the type (EFI System, Linux filesystem, ...), or the raw type when unknown.</summary>
        public string Type { get; set; }
        /// <summary>The GPT type GUID, or the MBR type byte as two hex digits.</summary>
        public string TypeId { get; set; }
        public string Name { get; set; }
        /// <summary>Byte offset of the first sector in the guest disk.</summary>
        public long Offset { get; set; }
        public long Size { get; set; }
        /// <summary>The GPT unique partition GUID; null for MBR.</summary>
        public string Guid { get; set; }
        /// <summary>GPT attribute bits (bit 0 required, 1 no block IO, 2 legacy BIOS bootable, 48-63 type-specific).</summary>
        public ulong Attributes { get; set; }
        public bool Bootable { get; set; }
        /// <summary>MBR: Primary, Extended or Logical; GPT: Primary.</summary>
        public string Kind { get; set; }
        /// <summary>What is found in the partition (blkid's TYPE), or null.</summary>
        public string FileSystem { get; set; }

        public override string ToString() => $"{Table} #{Number} {Type} @{Offset}+{Size}";
    }
}
