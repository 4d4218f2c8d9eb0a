using QcowPS.Engine;
using QcowPS.Engine.Qcow2;

namespace QcowPS
{
    /// <summary>One guest cluster with its L2 entry decoded, or (with -Extent) one merged run.</summary>
    public sealed class QcowCluster
    {
        public string Path { get; set; }
        public long VirtualOffset { get; set; }
        public long Length { get; set; }
        public ClusterType ClusterType { get; set; }
        /// <summary>Host offset of the data (standard) or of the compressed stream; null when none.</summary>
        public long? HostOffset { get; set; }
        /// <summary>Bytes from the compressed offset to the end of its last sector.</summary>
        public int? CompressedSize { get; set; }
        /// <summary>512-byte sectors the compressed data touches (the L2 entry's count + 1).</summary>
        public int? CompressedSectors { get; set; }
        /// <summary>Refcount of the host cluster (for compressed: of the cluster holding the stream's start).</summary>
        public ulong? Refcount { get; set; }
        /// <summary>The COPIED flag (bit 63): refcount exactly one, writable in place.</summary>
        public bool Copied { get; set; }
        public long? L1Index { get; set; }
        public int? L2Index { get; set; }
        /// <summary>The raw 64-bit L2 entry.</summary>
        public ulong? L2Entry { get; set; }
        /// <summary>Extended L2: the subcluster bitmap (allocated bits 0-31, zero bits 32-63).</summary>
        public ulong? SubclusterBitmap { get; set; }
        /// <summary>Layer of the chain (0 = this image); with -Extent, the layer that supplies the data.</summary>
        public int Layer { get; set; }

        /// <summary>The file of the layer that stores the run (Layer 0: Path; deeper: a backing file), as QcowBlock has.</summary>
        public string LayerPath { get; set; }

        public override string ToString() => $"{VirtualOffset:X} {ClusterType}";
    }
}
