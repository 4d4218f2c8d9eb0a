using System.Collections.Generic;

namespace QcowPS
{
    /// <summary>The report of Test-QcowImage -Detailed and Repair-QcowImage (qemu-img check's fields).</summary>
    public sealed class QcowCheckResult
    {
        public string Path { get; set; }
        public bool IsConsistent => Corruptions == 0 && CheckErrors == 0;

        /// <summary>
        /// Nothing to report: consistent and no leaks (qemu-img check exits 0). What Test-QcowImage returns
        /// without -Detailed; leaks make an image unclean but not inconsistent (space is wasted, no data is at risk).
        /// </summary>
        public bool IsClean => IsConsistent && Leaks == 0;
        public int Corruptions { get; set; }
        public int Leaks { get; set; }
        public int CheckErrors { get; set; }
        public int CorruptionsFixed { get; set; }
        public int LeaksFixed { get; set; }
        public long AllocatedClusters { get; set; }
        public long TotalClusters { get; set; }
        public long FragmentedClusters { get; set; }
        public long CompressedClusters { get; set; }
        public long ImageEndOffset { get; set; }
        public TextList Problems { get; set; } = new TextList();

        public override string ToString() => $"{Path}: {Corruptions} corruptions, {Leaks} leaks";
    }
}
