namespace QcowPS
{
    /// <summary>What Optimize-QcowImage did (or, with -WhatIf, would do) for one file system.</summary>
    public sealed class QcowOptimizeResult
    {
        public string Path { get; set; }
        public int Partition { get; set; }
        public string Type { get; set; }
        /// <summary>Optimized, WouldOptimize (-WhatIf) or Skipped.</summary>
        public string Action { get; set; }
        /// <summary>Why it was skipped; null otherwise.</summary>
        public string Reason { get; set; }
        /// <summary>Bytes the file system marks free.</summary>
        public long FreeBytes { get; set; }
        /// <summary>Bytes of stored clusters (in any layer) that now read as zeros without being stored.</summary>
        public long ZeroedBytes { get; set; }
        public long ZeroedClusters { get; set; }

        public override string ToString() => $"{Type} #{Partition} {Action} {ZeroedBytes}";
    }
}
