using System;
using ZstdSharp;

namespace QcowPS.Engine.Compression
{
    /// <summary>
    /// zstd clusters (compression_type 1): one frame per cluster at the default level 3, as QEMU writes
    /// them. Decompression streams, because the frame is followed by padding or other clusters' data.
    /// </summary>
    internal sealed class ZstdCodec : ClusterCodec
    {
        public const int DefaultLevel = 3;
        private Compressor _compressor;
        private Decompressor _decompressor;
        private readonly int _level;

        public ZstdCodec(int level = DefaultLevel) { _level = level; }

        public override bool Decompress(byte[] source, int sourceLength, byte[] destination, int length, out int consumed)
        {
            consumed = 0;
            if (_decompressor == null) _decompressor = new Decompressor();
            else _decompressor.ResetStream();
            int consumedTotal = 0, writtenTotal = 0;
            try
            {
                while (writtenTotal < length)
                {
                    var status = _decompressor.UnwrapStream(
                        new ReadOnlySpan<byte>(source, consumedTotal, sourceLength - consumedTotal),
                        new Span<byte>(destination, writtenTotal, length - writtenTotal),
                        out int usedNow, out int written);
                    consumedTotal += usedNow;
                    writtenTotal += written;
                    if (usedNow == 0 && written == 0) break;  // no progress: truncated or ended early
                    if (status == System.Buffers.OperationStatus.InvalidData) return false;
                }
            }
            catch (ZstdException) { return false; }
            consumed = consumedTotal;
            return writtenTotal == length;
        }

        public override int Compress(byte[] source, int length, byte[] destination, int maxLength)
        {
            if (_compressor == null) _compressor = new Compressor(_level);
            try
            {
                if (_compressor.TryWrap(new ReadOnlySpan<byte>(source, 0, length),
                        new Span<byte>(destination, 0, Math.Min(maxLength, destination.Length)), out int written))
                    return written;
                return -1;
            }
            catch (ZstdException) { return -1; }
        }

        public override void Dispose()
        {
            _compressor?.Dispose();
            _decompressor?.Dispose();
        }
    }
}
