using System;
using QcowPS.Engine;

namespace QcowPS
{
    /// <summary>What Convert-QcowImage emits.</summary>
    public sealed class QcowConversionResult
    {
        public string Source { get; set; }
        public string Destination { get; set; }
        public ImageFormat DestinationFormat { get; set; }
        public long VirtualSize { get; set; }
        public long FileSize { get; set; }
        public long DataClusters { get; set; }
        public long ZeroClusters { get; set; }
        public long CompressedClusters { get; set; }
        /// <summary>Bytes of data converted per byte written for it (1.0 uncompressed).</summary>
        public double CompressionRatio { get; set; }
        public TimeSpan Duration { get; set; }

        public override string ToString() => Destination;
    }
}
