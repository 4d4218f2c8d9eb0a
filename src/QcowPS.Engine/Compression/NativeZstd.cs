using System;
using System.Runtime.InteropServices;

namespace QcowPS.Engine.Compression
{
    /// <summary>
    /// The system's libzstd (the library QEMU itself links), called directly: several times faster than
    /// the managed port when the module runs on netstandard2.0. Used when present; ZstdSharp otherwise.
    /// </summary>
    internal static unsafe class NativeZstd
    {
        private const string Library = "libzstd.so.1";

        [StructLayout(LayoutKind.Sequential)]
        public struct InBuffer
        {
            public byte* Source;
            public UIntPtr Size;
            public UIntPtr Position;
        }

        [StructLayout(LayoutKind.Sequential)]
        public struct OutBuffer
        {
            public byte* Destination;
            public UIntPtr Size;
            public UIntPtr Position;
        }

        [DllImport(Library, EntryPoint = "ZSTD_createCCtx")] public static extern IntPtr CreateCCtx();
        [DllImport(Library, EntryPoint = "ZSTD_freeCCtx")] public static extern UIntPtr FreeCCtx(IntPtr cctx);
        [DllImport(Library, EntryPoint = "ZSTD_compressCCtx")]
        public static extern UIntPtr CompressCCtx(IntPtr cctx, byte* destination, UIntPtr capacity, byte* source, UIntPtr size, int level);
        [DllImport(Library, EntryPoint = "ZSTD_createDCtx")] public static extern IntPtr CreateDCtx();
        [DllImport(Library, EntryPoint = "ZSTD_freeDCtx")] public static extern UIntPtr FreeDCtx(IntPtr dctx);
        [DllImport(Library, EntryPoint = "ZSTD_DCtx_reset")] public static extern UIntPtr ResetDCtx(IntPtr dctx, int reset);
        [DllImport(Library, EntryPoint = "ZSTD_decompressStream")]
        public static extern UIntPtr DecompressStream(IntPtr dctx, OutBuffer* output, InBuffer* input);
        [DllImport(Library, EntryPoint = "ZSTD_isError")] public static extern uint IsError(UIntPtr code);

        private static readonly Lazy<bool> s_available = new Lazy<bool>(() =>
        {
            if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux)) return false;
            try
            {
                var c = CreateCCtx();
                if (c == IntPtr.Zero) return false;
                FreeCCtx(c);
                return true;
            }
            catch (DllNotFoundException) { return false; }
            catch (EntryPointNotFoundException) { return false; }
            catch (BadImageFormatException) { return false; }
        });

        public static bool Available => s_available.Value;
    }
}
