using System;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine
{
    /// <summary>
    /// A run as the whole backing chain resolves it: which layer (0 = top) supplies the bytes and how.
    /// Past the end of every layer that could supply them, the run is Unallocated at the deepest layer.
    /// </summary>
    public struct ChainExtent
    {
        public long Offset;
        public long Length;
        public ClusterType Type;
        public int Depth;
        public long HostOffset;
        /// <summary>For compressed runs: the L2 entry in the layer that holds it.</summary>
        public ulong L2Raw;
        public VirtualDisk Layer;

        /// <summary>Allocated somewhere in the chain (qemu-img map's "present").</summary>
        public bool Present => Type != ClusterType.Unallocated;

        /// <summary>
        /// The host file that holds this run's bytes as they are, at HostOffset, uncompressed and contiguous
        /// (a qcow2 normal run, unencrypted, in the image or its data file; a raw file's run); null when none
        /// does. A kernel copy (IHostFile.CopyFrom) may take the bytes from there.
        /// </summary>
        internal IO.IHostFile StoredFile => Type == ClusterType.Normal ? Layer?.StoredDataFile : null;
    }
}
