using System;
using System.Collections.Generic;
using System.Threading;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine.Operations
{
    /// <summary>
    /// Compares the guest data of two disks, like qemu-img compare: ranges both sides leave
    /// unallocated or zero are skipped without reading; past the end of the shorter disk the longer
    /// one must read as zeros. Strict (qemu-img compare -s) also fails on any size difference and on
    /// ranges stored differently (see <see cref="Allocation"/>), even where they read the same.
    /// </summary>
    public static class ImageComparer
    {
        private const int Chunk = 1 << 20;
        private const int Sector = 512;

        public static IEnumerable<QcowDifference> Compare(VirtualDisk a, VirtualDisk b, bool all, bool strict,
            CancellationToken cancel = default, Action<long, long> progress = null)
        {
            if (strict && a.Length != b.Length)
            {
                yield return new QcowDifference
                {
                    Path = a.Path, DifferencePath = b.Path, Offset = Math.Min(a.Length, b.Length),
                    Length = Math.Abs(a.Length - b.Length), Reason = "SizeMismatch",
                };
                if (!all) yield break;
            }
            long end = Math.Max(a.Length, b.Length);
            var bufferA = new byte[Chunk];
            var bufferB = new byte[Chunk];
            QcowDifference pending = null;
            long common = Math.Min(a.Length, b.Length);
            long strictFrom = 0;  // allocation already reported up to here
            for (long pos = 0; pos < end;)
            {
                cancel.ThrowIfCancellationRequested();
                int n = (int)Math.Min(Chunk, end - pos);
                // A run that both sides leave unstored (or zero) is passed in one step, however long:
                // a sparse 1 TiB disk is not walked a megabyte at a time.
                long zeroRun = Math.Min(ZeroRun(a, pos, end), ZeroRun(b, pos, end));
                bool bothZero = zeroRun >= n;
                long step = bothZero ? zeroRun : n;
                if (strict && pos + step > strictFrom && pos < common)
                {
                    // As qemu-img compare -s: how each range is stored, as well as what it holds.
                    long chunkEnd = Math.Min(pos + step, common);
                    for (long from = Math.Max(pos, strictFrom); from < chunkEnd;)
                    {
                        long at = FirstAllocationMismatch(a, b, from, chunkEnd);
                        if (at < 0) break;
                        // The whole run stored differently, in one object (it may go on past this chunk).
                        long runEnd = AllocationMismatchEnd(a, b, at, common);
                        var mismatch = new QcowDifference { Path = a.Path, DifferencePath = b.Path, Offset = at, Length = runEnd - at, Reason = "AllocationMismatch" };
                        if (!all)
                        {
                            // The first difference by offset: content before the run comes first.
                            long contentAt = bothZero ? -1 : FirstContentDifference(a, b, pos, (int)(at - pos), bufferA, bufferB);
                            yield return contentAt >= 0
                                ? new QcowDifference { Path = a.Path, DifferencePath = b.Path, Offset = contentAt, Length = 1, Reason = "Content" }
                                : mismatch;
                            yield break;
                        }
                        if (pending != null) yield return pending;
                        pending = null;
                        yield return mismatch;
                        from = strictFrom = runEnd;
                    }
                }
                if (bothZero)
                {
                    pos += step;
                    progress?.Invoke(pos, end);
                    continue;
                }
                Fill(a, pos, bufferA, n);
                Fill(b, pos, bufferB, n);
                if (!new ReadOnlySpan<byte>(bufferA, 0, n).SequenceEqual(new ReadOnlySpan<byte>(bufferB, 0, n)))
                {
                    for (int s = 0; s < n; s += Sector)
                    {
                        int len = Math.Min(Sector, n - s);
                        if (new ReadOnlySpan<byte>(bufferA, s, len).SequenceEqual(new ReadOnlySpan<byte>(bufferB, s, len))) continue;
                        if (!all)
                        {
                            int i = s;
                            while (bufferA[i] == bufferB[i]) i++;
                            yield return new QcowDifference { Path = a.Path, DifferencePath = b.Path, Offset = pos + i, Length = 1, Reason = "Content" };
                            yield break;
                        }
                        if (pending != null && pending.Offset + pending.Length == pos + s) pending.Length += len;
                        else
                        {
                            if (pending != null) yield return pending;
                            pending = new QcowDifference { Path = a.Path, DifferencePath = b.Path, Offset = pos + s, Length = len, Reason = "Content" };
                        }
                    }
                }
                pos += n;
                progress?.Invoke(pos, end);
            }
            if (pending != null) yield return pending;
        }

        /// <summary>
        /// How a range is stored, in the classes qemu-img compare -s tells apart (QEMU's block status
        /// flags): unallocated in the whole chain; data in a host cluster (or a raw file's data);
        /// compressed; a zero flag without a host cluster; zeros with a host range (a preallocated zero
        /// cluster, or a hole of a raw file, which QEMU reports as allocated zeros).
        /// </summary>
        private enum Allocation { Unallocated, Data, Compressed, Zero, ZeroAllocated }

        private static Allocation AllocationOf(ChainExtent e)
        {
            switch (e.Type)
            {
                case ClusterType.Normal: return Allocation.Data;
                case ClusterType.Compressed: return Allocation.Compressed;
                case ClusterType.ZeroAllocated: return Allocation.ZeroAllocated;
                case ClusterType.Zero: return e.Layer is Raw.RawImage ? Allocation.ZeroAllocated : Allocation.Zero;
                default: return Allocation.Unallocated;
            }
        }

        /// <summary>
        /// How many bytes from offset (up to end) read as zeros without being read: unstored or zero in
        /// the whole chain, or past the disk's end. At most 1 PiB per step, so that cancellation is seen.
        /// </summary>
        private static long ZeroRun(VirtualDisk disk, long offset, long end) =>
            disk.EndOfUnstoredRun(offset, offset + Math.Min(end - offset, 1L << 50)) - offset;

        /// <summary>The offset of the first byte in [offset, offset + length) that differs, or -1.</summary>
        private static long FirstContentDifference(VirtualDisk a, VirtualDisk b, long offset, int length, byte[] bufferA, byte[] bufferB)
        {
            if (length <= 0 || (ReadsAsZero(a, offset, length) && ReadsAsZero(b, offset, length))) return -1;
            Fill(a, offset, bufferA, length);
            Fill(b, offset, bufferB, length);
            if (new ReadOnlySpan<byte>(bufferA, 0, length).SequenceEqual(new ReadOnlySpan<byte>(bufferB, 0, length))) return -1;
            int i = 0;
            while (bufferA[i] == bufferB[i]) i++;
            return offset + i;
        }

        /// <summary>The first offset in [offset, end) that the two disks store differently, or -1.</summary>
        private static long FirstAllocationMismatch(VirtualDisk a, VirtualDisk b, long offset, long end)
        {
            for (long pos = offset; pos < end;)
            {
                var ea = a.GetChainExtent(pos, end - pos);
                var eb = b.GetChainExtent(pos, end - pos);
                if (AllocationOf(ea) != AllocationOf(eb)) return pos;
                pos += Math.Min(ea.Length, eb.Length);
            }
            return -1;
        }

        /// <summary>Where the run of differently stored ranges that starts at offset ends (at most end).</summary>
        private static long AllocationMismatchEnd(VirtualDisk a, VirtualDisk b, long offset, long end)
        {
            long pos = offset;
            while (pos < end)
            {
                var ea = a.GetChainExtent(pos, end - pos);
                var eb = b.GetChainExtent(pos, end - pos);
                if (AllocationOf(ea) == AllocationOf(eb)) break;
                pos += Math.Min(ea.Length, eb.Length);
            }
            return pos;
        }

        /// <summary>Whether the range reads as zeros without reading it.</summary>
        private static bool ReadsAsZero(VirtualDisk disk, long offset, int length) =>
            disk.EndOfUnstoredRun(offset, offset + length) >= offset + length;

        private static void Fill(VirtualDisk disk, long offset, byte[] buffer, int length)
        {
            long available = Math.Max(0, Math.Min(length, disk.Length - offset));
            if (available > 0) disk.Read(offset, buffer, 0, (int)available);
            if (available < length) Array.Clear(buffer, (int)available, length - (int)available);
        }
    }
}
