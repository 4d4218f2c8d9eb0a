namespace QcowPS.Engine
{
    /// <summary>What a guest cluster (or subcluster) is, as its L2 entry says.</summary>
    public enum ClusterType
    {
        /// <summary>Not allocated here: reads come from the backing file, or zeros.</summary>
        Unallocated,
        /// <summary>Data in a host cluster.</summary>
        Normal,
        /// <summary>Compressed data in a byte range of the image file.</summary>
        Compressed,
        /// <summary>Reads as zeros, no host cluster (v3 zero flag, or QED's zero cluster).</summary>
        Zero,
        /// <summary>Reads as zeros, with a preallocated host cluster.</summary>
        ZeroAllocated,
    }
}
