using System;
using System.Collections.Generic;
using System.Threading;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine.Operations
{
    /// <summary>
    /// Compares the guest data of two disks, like qemu-img compare: ranges both sides leave
    /// unallocated or zero are skipped without reading; past the end of the shorter disk the longer
    /// one must read as zeros (unless strict, where any size difference counts).
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
            for (long pos = 0; pos < end;)
            {
                cancel.ThrowIfCancellationRequested();
                int n = (int)Math.Min(Chunk, end - pos);
                if (ReadsAsZero(a, pos, n) && ReadsAsZero(b, pos, n))
                {
                    pos += n;
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

        /// <summary>Whether the range reads as zeros without reading it (unallocated or zero in the whole chain, or past the end).</summary>
        private static bool ReadsAsZero(VirtualDisk disk, long offset, int length)
        {
            long end = Math.Min(offset + length, disk.Length);
            for (long pos = offset; pos < end;)
            {
                var e = disk.GetChainExtent(pos, end - pos);
                if (e.Type == ClusterType.Normal || e.Type == ClusterType.Compressed) return false;
                pos += e.Length;
            }
            return true;
        }

        private static void Fill(VirtualDisk disk, long offset, byte[] buffer, int length)
        {
            long available = Math.Max(0, Math.Min(length, disk.Length - offset));
            if (available > 0) disk.Read(offset, buffer, 0, (int)available);
            if (available < length) Array.Clear(buffer, (int)available, length - (int)available);
        }
    }
}
