using QcowPS.Engine;
using QcowPS.Engine.Qcow2;

namespace QcowPS
{
    /// <summary>A piece of guest data (at most one cluster) from Read-QcowBlock.</summary>
    public sealed class QcowBlock
    {
        public string Path { get; set; }
        public long Offset { get; set; }
        public int Length { get; set; }
        public byte[] Data { get; set; }
        public ClusterType ClusterType { get; set; }
        /// <summary>Where the bytes are in the file of the layer that holds them; null when none.</summary>
        public long? HostOffset { get; set; }
        /// <summary>Which layer of the backing chain supplied the bytes (0 = the image itself).</summary>
        public int Layer { get; set; }
        public string LayerPath { get; set; }

        public override string ToString() => $"{Offset:X}+{Length}";
    }
}
