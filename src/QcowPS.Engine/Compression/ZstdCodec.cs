using System;
using ZstdSharp;

namespace QcowPS.Engine.Compression
{
    /// <summary>
    /// zstd clusters (compression_type 1): one frame per cluster at the default level 3, as QEMU writes
    /// them. Decompression streams, because the frame is followed by padding or other clusters' data.
    /// Uses the system libzstd when there is one (NativeZstd), else the managed ZstdSharp port.
    /// </summary>
    internal sealed unsafe class ZstdCodec : ClusterCodec
    {
        public const int QemuLevel = 3;
        private readonly int _level;
        /// <summary>
        /// Names the environment variable that, set to 1, makes new codecs use the managed port even
        /// where libzstd is present: the fallback that Windows and libzstd-less hosts get, tested here.
        /// </summary>
        public const string ManagedSwitchVariable = "QCOWPS_ZSTD_MANAGED";

        /// <summary>True: codecs made from now on use ZstdSharp (tests flip it; the environment sets it first).</summary>
        internal static bool ForceManaged { get; set; } = Environment.GetEnvironmentVariable(ManagedSwitchVariable) == "1";

        private readonly bool _native = NativeZstd.Available && !ForceManaged;

        /// <summary>Whether this codec calls the system libzstd (false: the managed port).</summary>
        internal bool UsesNativeLibrary => _native;
        private IntPtr _cctx, _dctx;
        private Compressor _compressor;
        private Decompressor _decompressor;

        public ZstdCodec(int level = QemuLevel) { _level = level; }

        protected override bool DecompressCluster(byte[] source, int sourceLength, byte[] destination, int destinationOffset, int length, out int consumed)
        {
            consumed = 0;
            return _native ? DecompressNative(source, sourceLength, destination, destinationOffset, length, out consumed)
                           : DecompressManaged(source, sourceLength, destination, destinationOffset, length, out consumed);
        }

        private bool DecompressNative(byte[] source, int sourceLength, byte[] destination, int offset, int length, out int consumed)
        {
            consumed = 0;
            if (_dctx == IntPtr.Zero) _dctx = NativeZstd.CreateDCtx();
            else NativeZstd.ResetDCtx(_dctx, 1);  // ZSTD_reset_session_only
            fixed (byte* src = source)
            fixed (byte* dst = destination)
            {
                var input = new NativeZstd.InBuffer { Source = src, Size = (UIntPtr)sourceLength, Position = UIntPtr.Zero };
                var output = new NativeZstd.OutBuffer { Destination = dst + offset, Size = (UIntPtr)length, Position = UIntPtr.Zero };
                while ((long)output.Position < length)
                {
                    ulong lastIn = (ulong)input.Position, lastOut = (ulong)output.Position;
                    var ret = NativeZstd.DecompressStream(_dctx, &output, &input);
                    if (NativeZstd.IsError(ret) != 0) return false;
                    if ((ulong)input.Position == lastIn && (ulong)output.Position == lastOut) break;  // no progress: truncated
                }
                consumed = (int)input.Position;
                return (long)output.Position == length;
            }
        }

        private bool DecompressManaged(byte[] source, int sourceLength, byte[] destination, int offset, int length, out int consumed)
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
                        new Span<byte>(destination, offset + writtenTotal, length - writtenTotal),
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

        protected override int CompressCluster(byte[] source, int offset, int length, byte[] destination, int maxLength)
        {
            int capacity = Math.Min(maxLength, destination.Length);
            if (_native)
            {
                if (_cctx == IntPtr.Zero) _cctx = NativeZstd.CreateCCtx();
                fixed (byte* src = source)
                fixed (byte* dst = destination)
                {
                    var ret = NativeZstd.CompressCCtx(_cctx, dst, (UIntPtr)capacity, src + offset, (UIntPtr)length, _level);
                    return NativeZstd.IsError(ret) != 0 ? -1 : (int)ret;  // "destination too small" is an error code
                }
            }
            if (_compressor == null) _compressor = new Compressor(_level);
            try
            {
                if (_compressor.TryWrap(new ReadOnlySpan<byte>(source, offset, length), new Span<byte>(destination, 0, capacity), out int written))
                    return written;
                return -1;
            }
            catch (ZstdException) { return -1; }
        }

        public override void Dispose()
        {
            if (_cctx != IntPtr.Zero) { NativeZstd.FreeCCtx(_cctx); _cctx = IntPtr.Zero; }
            if (_dctx != IntPtr.Zero) { NativeZstd.FreeDCtx(_dctx); _dctx = IntPtr.Zero; }
            _compressor?.Dispose();
            _decompressor?.Dispose();
        }
    }
}
