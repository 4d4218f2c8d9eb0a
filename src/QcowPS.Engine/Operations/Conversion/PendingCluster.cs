using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine.Operations.Conversion
{
    /// <summary>A compressed source cluster whose stream the reader fetched and a worker inflates.</summary>
    internal sealed class PendingCluster
    {
        public long ClusterStart;         // guest offset of the source cluster
        public byte[] Stream;
        public int StreamLength;
        public int ClusterSize;
        public Qcow2CompressionType Type;
    }
}
