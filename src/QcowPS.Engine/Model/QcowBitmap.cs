namespace QcowPS
{
    /// <summary>One persistent dirty bitmap of a qcow2 image (Get-QcowBitmap, New-QcowBitmap).</summary>
    public sealed class QcowBitmap
    {
        public string Path { get; set; }
        public string Name { get; set; }
        /// <summary>Bytes of the disk one bit covers (null for an NBD export: the protocol does not say).</summary>
        public long? Granularity { get; set; }
        /// <summary>QEMU's "auto" flag: the bitmap records every write to the disk (null for an NBD export).</summary>
        public bool? Enabled { get; set; }
        /// <summary>A writer did not store the bitmap cleanly: it may be stale and is not used (remove it). Null for an NBD export.</summary>
        public bool? InUse { get; set; }
        /// <summary>Bytes of the disk marked dirty; null when the bitmap is in use or cannot be read.</summary>
        public long? DirtyBytes { get; set; }
        /// <summary>Where the bitmap table is stored in the image file (0: not stored yet; null for an NBD export).</summary>
        public long? TableOffset { get; set; }
        /// <summary>Entries of the bitmap table (one per cluster of bitmap data; null for an NBD export).</summary>
        public long? TableSize { get; set; }
        /// <summary>Why the bitmap cannot be used (unknown type, flags or extra data), or null.</summary>
        public string Unusable { get; set; }

        public override string ToString() => Name;
    }
}
