using System.Collections.Generic;

namespace QcowPS
{
    /// <summary>The report of Test-QcowImage -Detailed and Repair-QcowImage (qemu-img check's fields).</summary>
    public sealed class QcowCheckResult
    {
        public string Path { get; set; }
        public bool IsConsistent => Corruptions == 0 && CheckErrors == 0;
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
        public List<string> Problems { get; set; } = new List<string>();

        public override string ToString() => $"{Path}: {Corruptions} corruptions, {Leaks} leaks";
    }
}
