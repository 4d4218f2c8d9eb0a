using System;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace QcowPS.Engine.Operations
{
    /// <summary>All-zero checks on the hot path: vectorised, no allocation.</summary>
    public static class ZeroDetector
    {
        [MethodImpl(JitOptions.AggressiveOptimization)]
        public static bool IsZero(byte[] data, int offset, int count)
        {
            var span = new ReadOnlySpan<byte>(data, offset, count);
            int vectors = span.Length / Vector<byte>.Count;
            var asVectors = MemoryMarshal.Cast<byte, Vector<byte>>(span.Slice(0, vectors * Vector<byte>.Count));
            for (int i = 0; i < asVectors.Length; i++)
                if (asVectors[i] != Vector<byte>.Zero) return false;
            for (int i = vectors * Vector<byte>.Count; i < span.Length; i++)
                if (span[i] != 0) return false;
            return true;
        }
    }
}
