namespace QcowPS
{
    /// <summary>One entry of a metadata table (Get-QcowTable).</summary>
    public sealed class QcowTableEntry
    {
        public string Path { get; set; }
        public QcowTableKind Table { get; set; }
        /// <summary>Entry number within its table.</summary>
        public long Index { get; set; }
        /// <summary>For L2 entries: the L1 index of their table; for refcount block entries: the refcount table index.</summary>
        public long? ParentIndex { get; set; }
        /// <summary>Where the entry is stored in the file.</summary>
        public long Offset { get; set; }
        /// <summary>The raw value (for refcount block entries: the refcount).</summary>
        public ulong Value { get; set; }
        /// <summary>The offset it points to, or for refcount block entries the host offset of the cluster counted; null when none.</summary>
        public long? Target { get; set; }
        /// <summary>Decoded flags: COPIED, COMPRESSED, ZERO, bitmap bits, reserved bits set.</summary>
        public string Flags { get; set; }

        public override string ToString() => $"{Table}[{Index}] = 0x{Value:X}";
    }
}
