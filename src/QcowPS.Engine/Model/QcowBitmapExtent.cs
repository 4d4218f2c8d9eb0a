namespace QcowPS
{
    /// <summary>A run of a persistent bitmap that is all dirty or all clean (Get-QcowBitmap -Extent), like one qemu:dirty-bitmap extent.</summary>
    public sealed class QcowBitmapExtent
    {
        public string Path { get; set; }
        /// <summary>The bitmap's name.</summary>
        public string Name { get; set; }
        /// <summary>Guest offset where the run starts.</summary>
        public long Offset { get; set; }
        public long Length { get; set; }
        /// <summary>Whether the bitmap marks the run as written since it was started or cleared.</summary>
        public bool Dirty { get; set; }

        public override string ToString() => $"{Offset}+{Length} {(Dirty ? "dirty" : "clean")}";
    }
}
