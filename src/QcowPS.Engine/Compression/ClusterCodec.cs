using System;
using System.Threading;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine.Compression
{
    /// <summary>
    /// Compresses and decompresses single clusters the way QEMU does (block/qcow2-threads.c).
    /// An instance holds codec state and is used by one thread at a time; make one per worker.
    /// </summary>
    public abstract class ClusterCodec : IDisposable
    {
        /// <summary>QEMU's levels: zlib's default 6, zstd's default 3.</summary>
        public static int DefaultLevel(Qcow2CompressionType type) => type == Qcow2CompressionType.Zstd ? ZstdCodec.QemuLevel : DeflateCodec.QemuLevel;

        /// <summary>A codec; level 0 means the default level of the type (the one QEMU uses).</summary>
        public static ClusterCodec Create(Qcow2CompressionType type, int level = 0)
        {
            switch (type)
            {
                case Qcow2CompressionType.Zlib: return new DeflateCodec(level > 0 ? Math.Min(level, 9) : DeflateCodec.QemuLevel);
                case Qcow2CompressionType.Zstd: return new ZstdCodec(level > 0 ? Math.Min(level, 19) : ZstdCodec.QemuLevel);
                default: throw new QcowException(QcowErrorKind.Unsupported, $"Unknown compression type {(int)type}");
            }
        }

        /// <summary>
        /// Fills destination[0..length) from the stream in source[0..sourceLength). The stream may be
        /// followed by unrelated bytes (sector padding, the next cluster). Returns false when the data
        /// is not a valid stream or does not yield a whole cluster.
        /// </summary>
        public bool Decompress(byte[] source, int sourceLength, byte[] destination, int length) =>
            Decompress(source, sourceLength, destination, 0, length, out _);

        public bool Decompress(byte[] source, int sourceLength, byte[] destination, int length, out int consumed) =>
            Decompress(source, sourceLength, destination, 0, length, out consumed);

        /// <summary>
        /// As Decompress, into destination[destinationOffset..], also telling how many input bytes the
        /// stream used (to copy it without recompressing).
        /// </summary>
        public bool Decompress(byte[] source, int sourceLength, byte[] destination, int destinationOffset, int length, out int consumed)
        {
            Interlocked.Increment(ref s_decompressCalls);
            return DecompressCluster(source, sourceLength, destination, destinationOffset, length, out consumed);
        }

        /// <summary>The codec's own decompression, behind the counting Decompress.</summary>
        protected abstract bool DecompressCluster(byte[] source, int sourceLength, byte[] destination, int destinationOffset, int length, out int consumed);

        /// <summary>
        /// Compresses source[0..length) into destination; returns the compressed size, or -1 when it
        /// would not be smaller than maxLength (then the cluster is stored uncompressed, as QEMU does).
        /// </summary>
        public int Compress(byte[] source, int length, byte[] destination, int maxLength) =>
            Compress(source, 0, length, destination, maxLength);

        /// <summary>As Compress, for the cluster at source[offset..offset+length).</summary>
        public int Compress(byte[] source, int offset, int length, byte[] destination, int maxLength)
        {
            Interlocked.Increment(ref s_compressCalls);
            return CompressCluster(source, offset, length, destination, maxLength);
        }

        /// <summary>The codec's own compression, behind the counting Compress.</summary>
        protected abstract int CompressCluster(byte[] source, int offset, int length, byte[] destination, int maxLength);

        // Process-wide call counts, so that tests can prove what a copy did not do (e.g. recompress
        // streams it could copy). Counting costs one interlocked add per cluster.
        private static long s_compressCalls, s_decompressCalls;

        /// <summary>How many clusters every codec of this process has compressed so far.</summary>
        internal static long CompressCalls => Interlocked.Read(ref s_compressCalls);

        /// <summary>How many streams every codec of this process has decompressed so far.</summary>
        internal static long DecompressCalls => Interlocked.Read(ref s_decompressCalls);

        public virtual void Dispose() { }
    }
}
