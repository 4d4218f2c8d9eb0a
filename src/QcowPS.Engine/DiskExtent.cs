using System;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine
{
    /// <summary>
    /// A run of guest bytes that one layer stores the same way: where it starts, how long it is,
    /// what kind it is (ClusterType) and, for stored data, where it is in the host file.
    /// Runs never cross a cluster boundary when they are compressed.
    /// </summary>
    public struct DiskExtent
    {
        public long Offset;
        public long Length;
        public ClusterType Type;
        /// <summary>Host offset of the first byte (standard data), or of the compressed stream; -1 if none.</summary>
        public long HostOffset;
        /// <summary>For compressed clusters: the raw L2 entry, so the reader can find the stream.</summary>
        public ulong L2Raw;

        public bool IsData => Type == ClusterType.Normal || Type == ClusterType.Compressed;
        public bool ReadsAsZero => Type == ClusterType.Zero || Type == ClusterType.ZeroAllocated;

        public override string ToString() => $"[{Offset:X}+{Length:X}] {Type} @{HostOffset:X}";
    }
}
