using System;
using System.Buffers;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;
using QcowPS.Engine.Compression;
using QcowPS.Engine.IO;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine.Operations.Conversion
{
    /// <summary>
    /// What happens to one chunk at each stage of the pipeline (the thread mechanics are in
    /// ConversionPipeline.cs): read with its zero runs marked, processed (inflated, classified,
    /// compressed), and written to a qcow2 or raw destination.
    /// </summary>
    internal sealed partial class ConversionPipeline
    {
        /// <summary>
        /// Where the run that no layer of the source stores, starting at offset, ends: rounded down to
        /// whole chunks (so every chunk still starts at a multiple of the chunk size), or the disk's end.
        /// At most 1 PiB at a time, so that the reader holding the cursor comes back to check for
        /// cancellation. Returns offset when there is not a whole chunk to skip.
        /// </summary>
        private static long EndOfUnstoredRun(VirtualDisk disk, long offset, long size, int chunkBytes)
        {
            long pos = disk.EndOfUnstoredRun(offset, offset + Math.Min(size - offset, 1L << 50));
            if (pos >= size) return size;
            return offset + (pos - offset) / chunkBytes * chunkBytes;
        }

        /// <summary>Reader thread: one chunk of guest data, with zero runs marked and compressed streams fetched raw.</summary>
        [MethodImpl(JitOptions.AggressiveOptimization)]
        private static void ReadChunk(VirtualDisk source, ConversionChunk chunk, int clusterSize, ArrayPool<byte> pool, bool kernelCopy)
        {
            int clusters = (chunk.Length + clusterSize - 1) / clusterSize;
            chunk.Data = pool.Rent(clusters * clusterSize);
            chunk.KnownZero = new bool[clusters];
            for (int i = 0; i < clusters; i++) chunk.KnownZero[i] = true;
            long end = chunk.Offset + chunk.Length;
            List<(int at, int length)> unallocated = null;
            for (long pos = chunk.Offset; pos < end;)
            {
                var e = source.GetChainExtent(pos, end - pos);
                int at = (int)(pos - chunk.Offset);
                int n = (int)e.Length;
                if (e.Type == ClusterType.Normal || e.Type == ClusterType.Compressed)
                {
                    int first = at / clusterSize, last = (at + n - 1) / clusterSize;
                    for (int c = first; c <= last; c++) chunk.KnownZero[c] = false;
                    var image = CompressedSource(e.Layer);
                    if (e.Type == ClusterType.Compressed && image != null)
                    {
                        long clusterStart = pos - (pos & (image.ClusterSize - 1));
                        var stream = pool.Rent(image.ClusterSize * 2 + 1024);
                        var pending = new PendingCluster
                        {
                            ClusterStart = clusterStart, Stream = stream, ClusterSize = image.ClusterSize,
                            Type = image.Header.CompressionType,
                        };
                        pending.StreamLength = image.ReadCompressedStream(e.L2Raw, stream);
                        chunk.Inflate.Add(pending);
                    }
                    else
                    {
                        // Read even when the kernel will copy it: all-zero blocks are found in the buffer.
                        source.Read(pos, chunk.Data, at, n);
                        var file = kernelCopy ? e.StoredFile : null;
                        if (file != null)
                            (chunk.Stored ?? (chunk.Stored = new List<StoredRun>())).Add(new StoredRun { At = at, Length = n, File = file, HostOffset = e.HostOffset });
                    }
                }
                else (unallocated ?? (unallocated = new List<(int, int)>())).Add((at, n));
                pos += n;
            }
            // Pooled buffers hold old data, but only clusters that also hold data need zeros written in:
            // a cluster no layer stores is never read (ProcessChunk zeroes it when a backing file needs it).
            if (unallocated != null)
                foreach (var (at, n) in unallocated)
                    for (int c = at / clusterSize; c <= (at + n - 1) / clusterSize; c++)
                    {
                        if (chunk.KnownZero[c]) continue;
                        int from = Math.Max(at, c * clusterSize), to = Math.Min(at + n, (c + 1) * clusterSize);
                        Array.Clear(chunk.Data, from, to - from);
                    }
        }

        private static Qcow2Image CompressedSource(VirtualDisk layer)
        {
            if (layer is Qcow2Image q) return q;
            if (layer is Qcow2SnapshotView v) return v.Image;
            return null;
        }

        /// <summary>Worker thread: inflate fetched streams, classify each destination cluster, compress.</summary>
        [MethodImpl(JitOptions.AggressiveOptimization)]
        private static void ProcessChunk(ConversionChunk chunk, int clusterSize, ConvertOptions options, VirtualDisk backing,
            Func<Qcow2CompressionType, ClusterCodec> codec, ArrayPool<byte> pool)
        {
            int clusters = chunk.KnownZero.Length;
            var passThrough = new Dictionary<int, (byte[] stream, int length)>();
            byte[] cluster = null;
            foreach (var p in chunk.Inflate)
            {
                // Inflate straight into the chunk when the source cluster lies inside it (the usual case).
                bool inside = p.ClusterStart >= chunk.Offset && p.ClusterStart + p.ClusterSize <= chunk.Offset + chunk.Length;
                byte[] target;
                int targetOffset;
                if (inside)
                {
                    target = chunk.Data;
                    targetOffset = (int)(p.ClusterStart - chunk.Offset);
                }
                else
                {
                    if (cluster == null || cluster.Length < p.ClusterSize)
                    {
                        if (cluster != null) pool.Return(cluster);
                        cluster = pool.Rent(p.ClusterSize);
                    }
                    target = cluster;
                    targetOffset = 0;
                }
                if (!codec(p.Type).Decompress(p.Stream, p.StreamLength, target, targetOffset, p.ClusterSize, out int consumed))
                    throw new QcowException(QcowErrorKind.Corrupt, null, $"The compressed cluster at guest offset 0x{p.ClusterStart:X} of the source is not a valid stream");
                if (!inside)
                {
                    // Copy the part of the source cluster this chunk covers.
                    long from = Math.Max(p.ClusterStart, chunk.Offset);
                    long to = Math.Min(p.ClusterStart + p.ClusterSize, chunk.Offset + chunk.Length);
                    Array.Copy(cluster, (int)(from - p.ClusterStart), chunk.Data, (int)(from - chunk.Offset), (int)(to - from));
                }
                bool sameShape = options.Compress && p.ClusterSize == clusterSize && p.Type == options.CompressionType &&
                    p.ClusterStart >= chunk.Offset && p.ClusterStart + clusterSize <= chunk.Offset + chunk.Length;
                if (sameShape && consumed < clusterSize)
                {
                    var stream = pool.Rent(clusterSize);
                    Array.Copy(p.Stream, stream, consumed);
                    passThrough[(int)((p.ClusterStart - chunk.Offset) / clusterSize)] = (stream, consumed);
                }
                pool.Return(p.Stream);
                p.Stream = null;
            }
            if (cluster != null) pool.Return(cluster);

            chunk.Kinds = new DestinationClusterKind[clusters];
            if (options.DestinationFormat == ImageFormat.Raw)
            {
                for (int c = 0; c < clusters; c++) chunk.Kinds[c] = chunk.KnownZero[c] ? DestinationClusterKind.Skip : DestinationClusterKind.Data;
                return;
            }
            chunk.Streams = options.Compress ? new byte[clusters][] : null;
            chunk.StreamLengths = options.Compress ? new int[clusters] : null;
            byte[] backingData = backing != null ? new byte[clusterSize] : null;
            for (int c = 0; c < clusters; c++)
            {
                int at = c * clusterSize;
                int n = Math.Min(clusterSize, chunk.Length - at);
                bool zero = chunk.KnownZero[c] || ZeroDetector.IsZero(chunk.Data, at, n);
                if (backing != null)
                {
                    if (chunk.KnownZero[c]) Array.Clear(chunk.Data, at, n);  // compared and perhaps written below
                    long guest = chunk.Offset + at;
                    long available = Math.Max(0, Math.Min(n, backing.Length - guest));
                    if (available > 0) backing.Read(guest, backingData, 0, (int)available);
                    Array.Clear(backingData, (int)available, clusterSize - (int)available);
                    bool same = BytesEqual(chunk.Data, at, backingData, n);
                    if (same) { chunk.Kinds[c] = DestinationClusterKind.Skip; continue; }
                    // Zeros over backing data: the zero flag on v3; v2 has none, so zeros are written as data.
                    if (zero) { chunk.Kinds[c] = options.Version >= 3 ? DestinationClusterKind.Zero : DestinationClusterKind.Data; continue; }
                }
                else if (zero) { chunk.Kinds[c] = DestinationClusterKind.Skip; continue; }

                if (options.Compress)
                {
                    if (passThrough.TryGetValue(c, out var copy))
                    {
                        chunk.Kinds[c] = DestinationClusterKind.Compressed;
                        chunk.Streams[c] = copy.stream;
                        chunk.StreamLengths[c] = copy.length;
                        continue;
                    }
                    // The last cluster of an odd-sized disk is compressed as a whole cluster: zero the padding.
                    if (n < clusterSize) Array.Clear(chunk.Data, at + n, clusterSize - n);
                    var output = pool.Rent(clusterSize);
                    int length = codec(options.CompressionType).Compress(chunk.Data, at, clusterSize, output, clusterSize - 1);
                    if (length > 0)
                    {
                        chunk.Kinds[c] = DestinationClusterKind.Compressed;
                        chunk.Streams[c] = output;
                        chunk.StreamLengths[c] = length;
                        continue;
                    }
                    pool.Return(output);
                }
                chunk.Kinds[c] = DestinationClusterKind.Data;
            }
            foreach (var leftover in passThrough) if (chunk.Streams == null || !ReferenceEquals(chunk.Streams[leftover.Key], leftover.Value.stream)) pool.Return(leftover.Value.stream);
        }

        /// <summary>
        /// Writes chunk.Data[at..at+length) at offset of file: the parts a source file holds as they are
        /// are copied by the kernel from there, the rest (and whatever the kernel will not copy) from the buffer.
        /// </summary>
        private static void WriteFromChunk(IHostFile file, long offset, ConversionChunk chunk, int at, int length)
        {
            if (chunk.Stored != null)
            {
                foreach (var run in chunk.Stored)
                {
                    int from = Math.Max(at, run.At), to = Math.Min(at + length, run.At + run.Length);
                    if (from >= to) continue;
                    if (from > at) file.WriteAt(offset, chunk.Data, at, from - at);
                    long target = offset + (from - at);
                    int copied = (int)file.CopyFrom(run.File, run.HostOffset + (from - run.At), target, to - from);
                    if (copied < to - from) file.WriteAt(target + copied, chunk.Data, from + copied, to - from - copied);
                    offset += to - at;
                    length -= to - at;
                    at = to;
                }
            }
            if (length > 0) file.WriteAt(offset, chunk.Data, at, length);
        }

        private static void ReturnBuffers(ConversionChunk chunk, ArrayPool<byte> pool)
        {
            if (chunk.Data != null) pool.Return(chunk.Data);
            chunk.Data = null;
            if (chunk.Streams != null)
                foreach (var s in chunk.Streams) if (s != null) pool.Return(s);
            chunk.Streams = null;
        }

        private static bool BytesEqual(byte[] a, int at, byte[] b, int length) =>
            new ReadOnlySpan<byte>(a, at, length).SequenceEqual(new ReadOnlySpan<byte>(b, 0, length));

        /// <summary>Calling thread: runs of data clusters in one write each, compressed streams packed.</summary>
        [MethodImpl(JitOptions.AggressiveOptimization)]
        private static void WriteQcow2Chunk(Qcow2Image image, ConversionChunk chunk, int clusterSize, ConversionCounters result)
        {
            long firstCluster = chunk.Offset / clusterSize;
            int clusters = chunk.Kinds.Length;
            if (chunk.Length % clusterSize != 0)
            {
                // The disk ends inside this chunk's last cluster: zero the rest of it (the buffer holds whole clusters).
                Array.Clear(chunk.Data, chunk.Length, clusters * clusterSize - chunk.Length);
            }
            for (int c = 0; c < clusters;)
            {
                switch (chunk.Kinds[c])
                {
                    case DestinationClusterKind.Data:
                    {
                        int run = 1;
                        while (c + run < clusters && chunk.Kinds[c + run] == DestinationClusterKind.Data) run++;
                        if (chunk.DataWrites == null) chunk.DataWrites = new List<Qcow2Image.HostWrite>();
                        image.MapNewClusters(firstCluster + c, c * clusterSize, run, chunk.DataWrites);
                        result.Data += run;
                        result.BytesIn += (long)run * clusterSize;
                        result.BytesOut += (long)run * clusterSize;
                        c += run;
                        break;
                    }
                    case DestinationClusterKind.Compressed:
                    {
                        int run = 1;
                        while (c + run < clusters && chunk.Kinds[c + run] == DestinationClusterKind.Compressed) run++;
                        image.WriteCompressedClusters(firstCluster + c, chunk.Streams, chunk.StreamLengths, c, run);
                        for (int k = c; k < c + run; k++)
                        {
                            result.Compressed++;
                            result.BytesIn += clusterSize;
                            result.BytesOut += chunk.StreamLengths[k];
                        }
                        c += run;
                        break;
                    }
                    case DestinationClusterKind.Zero:
                        image.WriteZeroes((firstCluster + c) * (long)clusterSize, Math.Min(clusterSize, image.Length - (firstCluster + c) * (long)clusterSize));
                        result.Zero++;
                        c++;
                        break;
                    default:
                        result.Zero++;
                        c++;
                        break;
                }
            }
        }

        /// <summary>Calling thread: data written in runs at 4 KiB granularity, all-zero blocks left as holes.</summary>
        [MethodImpl(JitOptions.AggressiveOptimization)]
        private static void WriteRawChunk(IHostFile file, ConversionChunk chunk, ConversionCounters result)
        {
            const int block = 4096;
            int clusterSize = Math.Max(block, (chunk.Length + chunk.Kinds.Length - 1) / chunk.Kinds.Length);
            int runStart = -1;
            for (int c = 0; c < chunk.Kinds.Length; c++)
            {
                int at = c * clusterSize;
                int end = Math.Min(at + clusterSize, chunk.Length);
                bool any = false;
                for (int b = at; b < end; b += block)
                {
                    int len = Math.Min(block, end - b);
                    bool zero = chunk.Kinds[c] == DestinationClusterKind.Skip || ZeroDetector.IsZero(chunk.Data, b, len);
                    if (!zero)
                    {
                        any = true;
                        if (runStart < 0) runStart = b;
                    }
                    else if (runStart >= 0)
                    {
                        WriteFromChunk(file, chunk.Offset + runStart, chunk, runStart, b - runStart);
                        Interlocked.Add(ref result.BytesIn, b - runStart);
                        Interlocked.Add(ref result.BytesOut, b - runStart);
                        runStart = -1;
                    }
                }
                if (any) Interlocked.Increment(ref result.Data);
                else Interlocked.Increment(ref result.Zero);
            }
            if (runStart >= 0)
            {
                WriteFromChunk(file, chunk.Offset + runStart, chunk, runStart, chunk.Length - runStart);
                Interlocked.Add(ref result.BytesIn, chunk.Length - runStart);
                Interlocked.Add(ref result.BytesOut, chunk.Length - runStart);
            }
        }
    }
}
