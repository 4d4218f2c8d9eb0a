using System;

namespace QcowPS.Engine.Compression
{
    /// <summary>
    /// What one thread needs to inflate compressed clusters on its own: a codec and its input and
    /// output buffers. An image keeps a few of these so that reads of independent requests inflate in
    /// parallel instead of taking turns on the image's single codec.
    /// </summary>
    internal sealed class ClusterInflater : IDisposable
    {
        public ClusterInflater(ClusterCodec codec, int clusterSize)
        {
            Codec = codec;
            // A compressed stream may run up to two clusters' worth of sectors (QEMU's own bound).
            Input = new byte[clusterSize * 2];
            Output = new byte[clusterSize];
        }

        public ClusterCodec Codec { get; }
        public byte[] Input { get; }
        public byte[] Output { get; }

        public void Dispose() => Codec.Dispose();
    }
}
