namespace QcowPS
{
    /// <summary>A guest range where two images differ (Compare-QcowImage).</summary>
    public sealed class QcowDifference
    {
        public string Path { get; set; }
        public string DifferencePath { get; set; }
        /// <summary>Guest offset of the first differing byte (with -All: of the differing range, sector aligned).</summary>
        public long Offset { get; set; }
        public long Length { get; set; }
        /// <summary>Content; with -Strict also SizeMismatch (images of different sizes) or AllocationMismatch (a range stored differently).</summary>
        public string Reason { get; set; }

        public override string ToString() => $"{Reason} at 0x{Offset:X} (+{Length})";
    }
}
