using System;
using System.IO;
using System.IO.Compression;
using System.Runtime.InteropServices;

namespace QcowPS.Engine.Compression
{
    /// <summary>
    /// Raw deflate, as qcow2 stores "zlib" clusters. Writes with a 4 KiB window (window bits -12):
    /// QEMU inflates with -12 and rejects streams that reach further back, which is what .NET's
    /// DeflateStream writes. .NET has no public window-bits setting, so this calls the runtime's own
    /// native zlib (System.IO.Compression.Native, zlib-ng in .NET 9+) directly. Reads use a 32 KiB
    /// window so streams written either way inflate.
    /// </summary>
    internal sealed unsafe class DeflateCodec : ClusterCodec
    {
        private const string NativeLibrary = "System.IO.Compression.Native";
        private const int ZOk = 0, ZStreamEnd = 1, ZBufError = -5;
        private const int ZFinish = 4;
        private const int Deflated = 8;
        private const int WriteWindowBits = -12;
        private const int ReadWindowBits = -15;
        private const int MemLevel = 9;
        private const int DefaultStrategy = 0;

        /// <summary>QEMU's level: zlib's default (-1 = 6).</summary>
        public const int QemuLevel = 6;

        [StructLayout(LayoutKind.Sequential)]
        private struct ZStream
        {
            public byte* NextIn;
            public byte* NextOut;
            public IntPtr Message;
            public IntPtr InternalState;
            public uint AvailIn;
            public uint AvailOut;
        }

        [DllImport(NativeLibrary, EntryPoint = "CompressionNative_DeflateInit2_")]
        private static extern int DeflateInit2(ZStream* stream, int level, int method, int windowBits, int memLevel, int strategy);
        [DllImport(NativeLibrary, EntryPoint = "CompressionNative_Deflate")]
        private static extern int Deflate(ZStream* stream, int flush);
        [DllImport(NativeLibrary, EntryPoint = "CompressionNative_DeflateEnd")]
        private static extern int DeflateEnd(ZStream* stream);
        [DllImport(NativeLibrary, EntryPoint = "CompressionNative_InflateInit2_")]
        private static extern int InflateInit2(ZStream* stream, int windowBits);
        [DllImport(NativeLibrary, EntryPoint = "CompressionNative_Inflate")]
        private static extern int Inflate(ZStream* stream, int flush);
        [DllImport(NativeLibrary, EntryPoint = "CompressionNative_InflateEnd")]
        private static extern int InflateEnd(ZStream* stream);
        [DllImport(NativeLibrary, EntryPoint = "CompressionNative_InflateReset2_")]
        private static extern int InflateReset2(ZStream* stream, int windowBits);

        private static readonly Lazy<bool> s_native = new Lazy<bool>(ProbeNative);

        /// <summary>Whether the runtime's native zlib is reachable (PowerShell 7 / .NET; not Windows PowerShell 5.1).</summary>
        public static bool NativeAvailable => s_native.Value;

        private static bool ProbeNative()
        {
            try
            {
                var z = new ZStream();
                if (InflateInit2(&z, ReadWindowBits) != ZOk) return false;
                InflateEnd(&z);
                return true;
            }
            catch (DllNotFoundException) { return false; }
            catch (EntryPointNotFoundException) { return false; }
        }

        private readonly int _level;
        private ZStream* _inflater;

        public DeflateCodec(int level = QemuLevel) { _level = level; }

        protected override bool DecompressCluster(byte[] source, int sourceLength, byte[] destination, int destinationOffset, int length, out int consumed)
        {
            consumed = sourceLength;
            if (!NativeAvailable) return DecompressManaged(source, sourceLength, destination, destinationOffset, length);
            if (_inflater == null)
            {
                _inflater = (ZStream*)Marshal.AllocHGlobal(sizeof(ZStream));
                *_inflater = new ZStream();
                if (InflateInit2(_inflater, ReadWindowBits) != ZOk)
                {
                    Marshal.FreeHGlobal((IntPtr)_inflater);
                    _inflater = null;
                    throw new QcowException(QcowErrorKind.IoError, "Cannot initialise zlib inflate");
                }
            }
            else if (InflateReset2(_inflater, ReadWindowBits) != ZOk)
                throw new QcowException(QcowErrorKind.IoError, "Cannot reset zlib inflate");

            fixed (byte* src = source)
            fixed (byte* dst = destination)
            {
                _inflater->NextIn = src;
                _inflater->AvailIn = (uint)sourceLength;
                _inflater->NextOut = dst + destinationOffset;
                _inflater->AvailOut = (uint)length;
                int ret = Inflate(_inflater, ZFinish);
                consumed = sourceLength - (int)_inflater->AvailIn;
                // As QEMU: success when a whole cluster came out, whether or not the stream ended there.
                return (ret == ZStreamEnd || ret == ZBufError || ret == ZOk) && _inflater->AvailOut == 0;
            }
        }

        private static bool DecompressManaged(byte[] source, int sourceLength, byte[] destination, int offset, int length)
        {
            try
            {
                using (var input = new MemoryStream(source, 0, sourceLength, false))
                using (var inflate = new DeflateStream(input, CompressionMode.Decompress))
                {
                    int total = 0;
                    while (total < length)
                    {
                        int n = inflate.Read(destination, offset + total, length - total);
                        if (n <= 0) break;
                        total += n;
                    }
                    return total == length;
                }
            }
            catch (InvalidDataException) { return false; }
        }

        protected override int CompressCluster(byte[] source, int offset, int length, byte[] destination, int maxLength)
        {
            if (!NativeAvailable)
                throw new QcowException(QcowErrorKind.Unsupported,
                    "Writing zlib-compressed clusters needs the .NET runtime's native zlib (PowerShell 7); use -CompressionType Zstd on Windows PowerShell");
            var z = new ZStream();
            if (DeflateInit2(&z, _level, Deflated, WriteWindowBits, MemLevel, DefaultStrategy) != ZOk)
                throw new QcowException(QcowErrorKind.IoError, "Cannot initialise zlib deflate");
            try
            {
                fixed (byte* src = source)
                fixed (byte* dst = destination)
                {
                    z.NextIn = src + offset;
                    z.AvailIn = (uint)length;
                    z.NextOut = dst;
                    z.AvailOut = (uint)Math.Min(maxLength, destination.Length);
                    int ret = Deflate(&z, ZFinish);
                    if (ret != ZStreamEnd) return -1;
                    return (int)(z.NextOut - dst);
                }
            }
            finally
            {
                DeflateEnd(&z);
            }
        }

        public override void Dispose()
        {
            if (_inflater != null)
            {
                InflateEnd(_inflater);
                Marshal.FreeHGlobal((IntPtr)_inflater);
                _inflater = null;
            }
        }
    }
}
