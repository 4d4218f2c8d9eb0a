using System;
using System.Diagnostics;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine.Operations
{
    /// <summary>
    /// Copies a disk's guest data into an existing disk of at least its size (Convert-QcowImage to an NBD
    /// export, like qemu-img convert -n or nbdcopy): only what the source stores is read; blocks of zeros
    /// are zeroed in the destination, and only where the destination does not already read as zeros.
    /// Bytes of the destination past the source's end are left as they are.
    /// </summary>
    public static class DiskCopier
    {
        /// <summary>Guest bytes read and written per step (NbdDisk sends a step's pieces together).</summary>
        private const int StepBytes = 8 << 20;
        /// <summary>All-zero blocks of this size inside data are zeroed, not written.</summary>
        private const int ZeroBlock = 64 * 1024;
        /// <summary>A run that reads as zeros is passed over this much at a time at most (cancellation stays prompt).</summary>
        private const long ZeroStep = 1L << 30;

        public static QcowConversionResult CopyInto(VirtualDisk source, VirtualDisk destination, ConvertOptions o)
        {
            var watch = Stopwatch.StartNew();
            long size = source.Length;
            if (!destination.CanWrite)
                throw new QcowException(QcowErrorKind.ReadOnly, destination.Path, $"'{destination.Path}' is open read-only");
            if (destination.Length < size)
                throw new QcowException(QcowErrorKind.InvalidArgument, destination.Path,
                    $"'{destination.Path}' has {destination.Length} bytes, fewer than the {size} of '{source.Path}'");
            var buffer = new byte[StepBytes];
            long dataBlocks = 0, zeroBlocks = 0;
            for (long pos = 0; pos < size;)
            {
                o.Cancellation.ThrowIfCancellationRequested();
                long data = DataRunLength(source, pos, (int)Math.Min(StepBytes, size - pos));
                if (data == 0)
                {
                    long n = source.GetChainExtent(pos, Math.Min(ZeroStep, size - pos)).Length;
                    ZeroUnlessZero(destination, pos, n);
                    zeroBlocks += (n + ZeroBlock - 1) / ZeroBlock;
                    pos += n;
                }
                else
                {
                    int n = (int)data;
                    source.Read(pos, buffer, 0, n);
                    WriteSkippingZeros(destination, pos, buffer, n, ref dataBlocks, ref zeroBlocks);
                    pos += n;
                }
                o.Progress?.Invoke(pos, size);
            }
            destination.Flush();
            return new QcowConversionResult
            {
                Source = source.Path, Destination = destination.Path, DestinationFormat = destination.Format,
                VirtualSize = destination.Length, FileSize = destination.FileSize,
                DataClusters = dataBlocks, ZeroClusters = zeroBlocks, CompressionRatio = 1.0, Duration = watch.Elapsed,
            };
        }

        /// <summary>Writes runs of non-zero blocks; all-zero blocks are zeroed in the destination where it does not read as zeros.</summary>
        private static void WriteSkippingZeros(VirtualDisk destination, long offset, byte[] buffer, int length, ref long dataBlocks, ref long zeroBlocks)
        {
            int runStart = -1;
            bool runIsData = false;
            for (int at = 0; ; at += ZeroBlock)
            {
                bool end = at >= length;
                bool isData = !end && !ZeroDetector.IsZero(buffer, at, Math.Min(ZeroBlock, length - at));
                if (!end)
                {
                    if (isData) dataBlocks++;
                    else zeroBlocks++;
                }
                if (runStart >= 0 && (end || isData != runIsData))
                {
                    int runEnd = Math.Min(at, length);
                    if (runIsData) destination.Write(offset + runStart, buffer, runStart, runEnd - runStart);
                    else ZeroUnlessZero(destination, offset + runStart, runEnd - runStart);
                    runStart = -1;
                }
                if (end) break;
                if (runStart < 0)
                {
                    runStart = at;
                    runIsData = isData;
                }
            }
        }

        private static void ZeroUnlessZero(VirtualDisk destination, long offset, long length)
        {
            long end = offset + length;
            for (long pos = offset; pos < end;)
            {
                var e = destination.GetChainExtent(pos, end - pos);
                bool zero = e.Type == ClusterType.Zero || e.Type == ClusterType.ZeroAllocated || (e.Type == ClusterType.Unallocated && destination.Backing == null);
                if (!zero) destination.WriteZeroes(pos, e.Length);
                pos += e.Length;
            }
        }

        /// <summary>How many bytes from offset (at most max) the source stores as data; 0 when the run there reads as zeros.</summary>
        private static long DataRunLength(VirtualDisk disk, long offset, int max)
        {
            long run = 0;
            while (run < max)
            {
                var next = disk.GetChainExtent(offset + run, max - run);
                if (next.Type != ClusterType.Normal && next.Type != ClusterType.Compressed) break;
                run += next.Length;
            }
            return Math.Min(run, max);
        }
    }
}
