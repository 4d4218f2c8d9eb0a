using System;
using System.IO;

namespace QcowPS.Engine.Operations
{
    /// <summary>
    /// Copies a stream into a disk at an offset (Write-QcowBlock -InputFile): zero chunks become zero
    /// writes (unallocated or zero clusters), not stored zeros, as qemu-img convert does.
    /// </summary>
    public static class DiskStreamWriter
    {
        public static long Write(VirtualDisk disk, long offset, Stream source, long length, Action<long, long> progress = null)
        {
            var buffer = new byte[(int)Math.Min(4 << 20, Math.Max(1, length))];
            long done = 0;
            while (done < length)
            {
                int n = source.Read(buffer, 0, (int)Math.Min(buffer.Length, length - done));
                if (n <= 0) break;
                if (ZeroDetector.IsZero(buffer, 0, n)) disk.WriteZeroes(offset + done, n);
                else disk.Write(offset + done, buffer, 0, n);
                done += n;
                progress?.Invoke(done, length);
            }
            return done;
        }
    }
}
