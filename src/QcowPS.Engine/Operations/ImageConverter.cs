using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Threading;
using QcowPS.Engine.Compression;
using QcowPS.Engine.IO;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine.Operations
{
    /// <summary>What Convert-QcowImage asks for (qemu-img convert -O ... [-c] [-B]).</summary>
    public sealed class ConvertOptions
    {
        public ImageFormat DestinationFormat { get; set; } = ImageFormat.Qcow2;
        public bool Compress { get; set; }
        public Qcow2CompressionType CompressionType { get; set; } = Qcow2CompressionType.Zlib;
        public int ClusterSize { get; set; } = 65536;
        public int Version { get; set; } = 3;
        public int RefcountBits { get; set; } = 16;
        /// <summary>Backing file of the destination, as stored; only what differs from it is written.</summary>
        public string BackingFile { get; set; }
        public string BackingFormat { get; set; }
        /// <summary>Worker threads for compression and decompression.</summary>
        public int Threads { get; set; } = Environment.ProcessorCount;
        public bool Overwrite { get; set; }
        public CancellationToken Cancellation { get; set; }
        /// <summary>Called on the calling thread with (bytes done, total bytes).</summary>
        public Action<long, long> Progress { get; set; }
        /// <summary>Wraps the destination's host file (tests simulate a full disk here).</summary>
        public Func<IHostFile, IHostFile> WrapDestination { get; set; }
    }

    /// <summary>
    /// Converts any virtual disk to qcow2 or raw. A reader thread walks the source in large
    /// sequential chunks, worker threads compress or inflate clusters, and the calling thread writes
    /// the chunks in order; at most a few dozen clusters are in flight. All-zero ranges are not
    /// written (qemu-img convert's -S 4k), compressed source clusters are copied without recompressing
    /// when the settings match, and the destination is built under a temporary name and renamed at the
    /// end, so a failed or cancelled conversion leaves nothing under the requested name.
    /// </summary>
    public static class ImageConverter
    {
        private enum ClusterKind : byte { Skip, Data, Compressed, Zero }

        private sealed class Chunk
        {
            public long Sequence;
            public long Offset;
            public int Length;
            public byte[] Data;
            public bool[] KnownZero;          // per destination cluster: no layer stores anything there
            public ClusterKind[] Kinds;
            public byte[][] Streams;          // compressed output per cluster
            public int[] StreamLengths;
            public List<PendingCluster> Inflate = new List<PendingCluster>();
            public Exception Error;
        }

        /// <summary>A compressed source cluster whose stream the reader fetched and a worker inflates.</summary>
        private sealed class PendingCluster
        {
            public long ClusterStart;         // guest offset of the source cluster
            public byte[] Stream;
            public int StreamLength;
            public int ClusterSize;
            public Qcow2CompressionType Type;
        }

        public static QcowConversionResult Convert(VirtualDisk source, string destination, ConvertOptions o)
        {
            var watch = Stopwatch.StartNew();
            destination = Path.GetFullPath(destination);
            if (o.DestinationFormat != ImageFormat.Qcow2 && o.DestinationFormat != ImageFormat.Raw)
                throw new QcowException(QcowErrorKind.InvalidArgument, destination, $"Destination format {o.DestinationFormat} is not supported (qcow2 or raw)");
            if (o.DestinationFormat == ImageFormat.Raw && (o.Compress || o.BackingFile != null))
                throw new QcowException(QcowErrorKind.InvalidArgument, destination, "A raw destination cannot be compressed or have a backing file");
            foreach (var layer in DiskImage.Layers(source))
                if (string.Equals(Path.GetFullPath(layer.Path), destination, StringComparison.Ordinal))
                    throw new QcowException(QcowErrorKind.InvalidArgument, destination, $"The destination '{destination}' is the source or one of its backing files");
            if (!o.Overwrite && (File.Exists(destination) || Directory.Exists(destination)))
                throw new QcowException(QcowErrorKind.AlreadyExists, destination, $"'{destination}' already exists (use -Force to replace it)");

            int threads = Math.Max(1, Math.Min(o.Threads, 64));
            long size = source.Length;
            var createOptions = new Qcow2CreateOptions
            {
                Size = size, ClusterSize = o.ClusterSize, Version = o.Version, RefcountBits = o.RefcountBits,
                CompressionType = o.CompressionType, BackingFile = o.BackingFile, BackingFormat = o.BackingFormat,
            };
            string backingFormat = null;
            if (o.DestinationFormat == ImageFormat.Qcow2)
            {
                createOptions.Size = size;
                Qcow2Creator.Validate(destination, createOptions, out backingFormat);
            }
            int clusterSize = o.DestinationFormat == ImageFormat.Qcow2 ? o.ClusterSize : 65536;
            int chunkClusters = Math.Max(1, (1 << 20) / clusterSize);
            int chunkBytes = chunkClusters * clusterSize;

            string temp = Path.Combine(Path.GetDirectoryName(destination) ?? ".", "." + Path.GetFileName(destination) + ".qcowps-" + Guid.NewGuid().ToString("N").Substring(0, 8));
            var result = new QcowConversionResult
            {
                Source = source.Path, Destination = destination, DestinationFormat = o.DestinationFormat, VirtualSize = size,
            };
            VirtualDisk backing = null;
            IHostFile rawFile = null;
            Qcow2Image qcow = null;
            using (var failure = CancellationTokenSource.CreateLinkedTokenSource(o.Cancellation))
            {
                var token = failure.Token;
                try
                {
                    if (o.DestinationFormat == ImageFormat.Qcow2)
                    {
                        if (o.BackingFile != null)
                        {
                            string resolved = BackingResolver.ResolveRelative(destination, o.BackingFile, "backing file");
                            backing = DiskImage.Open(resolved, new OpenOptions { Format = BackingResolver.ParseFormatName(destination, backingFormat) });
                        }
                        IHostFile file = FileHostFile.Create(temp, false);
                        if (o.WrapDestination != null) file = o.WrapDestination(file);
                        Qcow2Creator.WriteEmptyImage(file, createOptions, size, backingFormat);
                        qcow = Qcow2Image.Open(file, new OpenOptions { Writable = true });
                    }
                    else
                    {
                        rawFile = FileHostFile.Create(temp, false);
                        if (o.WrapDestination != null) rawFile = o.WrapDestination(rawFile);
                    }

                    long bytesIn = 0, bytesOut = 0;
                    var todo = new BlockingCollection<Chunk>(threads * 2);
                    var done = new Dictionary<long, Chunk>();
                    var doneGate = new object();
                    long chunkCount = (size + chunkBytes - 1) / chunkBytes;

                    void Fail(Exception e)
                    {
                        lock (doneGate)
                        {
                            done[-1] = new Chunk { Error = e };
                            Monitor.PulseAll(doneGate);
                        }
                        try { failure.Cancel(); } catch (ObjectDisposedException) { }
                    }

                    var reader = new Thread(() =>
                    {
                        try
                        {
                            for (long seq = 0; seq < chunkCount; seq++)
                            {
                                token.ThrowIfCancellationRequested();
                                long offset = seq * chunkBytes;
                                var chunk = new Chunk { Sequence = seq, Offset = offset, Length = (int)Math.Min(chunkBytes, size - offset) };
                                ReadChunk(source, chunk, clusterSize, o);
                                todo.Add(chunk, token);
                            }
                            todo.CompleteAdding();
                        }
                        catch (OperationCanceledException) { todo.CompleteAdding(); }
                        catch (Exception e) { Fail(e); todo.CompleteAdding(); }
                    }) { IsBackground = true, Name = "QcowPS convert reader" };

                    var workers = new List<Thread>();
                    for (int t = 0; t < threads; t++)
                    {
                        workers.Add(new Thread(() =>
                        {
                            var codecs = new Dictionary<Qcow2CompressionType, ClusterCodec>();
                            ClusterCodec Codec(Qcow2CompressionType type)
                            {
                                if (!codecs.TryGetValue(type, out var c)) codecs[type] = c = ClusterCodec.Create(type);
                                return c;
                            }
                            try
                            {
                                foreach (var chunk in todo.GetConsumingEnumerable(token))
                                {
                                    ProcessChunk(chunk, clusterSize, o, backing, Codec);
                                    lock (doneGate)
                                    {
                                        done[chunk.Sequence] = chunk;
                                        Monitor.PulseAll(doneGate);
                                    }
                                }
                            }
                            catch (OperationCanceledException) { }
                            catch (Exception e) { Fail(e); }
                            finally
                            {
                                foreach (var c in codecs.Values) c.Dispose();
                            }
                        }) { IsBackground = true, Name = "QcowPS convert worker " + t });
                    }
                    reader.Start();
                    foreach (var w in workers) w.Start();

                    try
                    {
                        for (long seq = 0; seq < chunkCount; seq++)
                        {
                            Chunk chunk;
                            lock (doneGate)
                            {
                                while (!done.TryGetValue(seq, out chunk) && !done.ContainsKey(-1))
                                {
                                    if (o.Cancellation.IsCancellationRequested) break;
                                    Monitor.Wait(doneGate, 200);
                                }
                                if (done.TryGetValue(-1, out var failed)) throw Rethrow(failed.Error);
                                o.Cancellation.ThrowIfCancellationRequested();
                                done.Remove(seq);
                            }
                            if (qcow != null) WriteQcow2Chunk(qcow, chunk, clusterSize, result, ref bytesIn, ref bytesOut);
                            else WriteRawChunk(rawFile, chunk, result, ref bytesIn, ref bytesOut);
                            o.Progress?.Invoke(chunk.Offset + chunk.Length, size);
                        }
                    }
                    finally
                    {
                        failure.Cancel();
                        reader.Join();
                        foreach (var w in workers) w.Join();
                    }

                    if (qcow != null)
                    {
                        qcow.Dispose();
                        qcow = null;
                    }
                    else
                    {
                        rawFile.SetLength(size);
                        rawFile.Flush();
                        rawFile.Dispose();
                        rawFile = null;
                    }
                    Qcow2Creator.MoveIntoPlace(temp, destination, o.Overwrite);
                    result.CompressionRatio = bytesOut == 0 ? 1.0 : (double)bytesIn / bytesOut;
                    result.FileSize = new FileInfo(destination).Length;
                    result.Duration = watch.Elapsed;
                    return result;
                }
                catch
                {
                    try { qcow?.Dispose(); } catch (Exception) { }
                    try { rawFile?.Dispose(); } catch (Exception) { }
                    try { File.Delete(temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
                    throw;
                }
                finally
                {
                    backing?.Dispose();
                }
            }
        }

        private static Exception Rethrow(Exception e) =>
            e is QcowException q ? new QcowException(q.Kind, q.FilePath, q.Message, q) : new QcowException(QcowErrorKind.IoError, null, e.Message, e);

        /// <summary>Reader thread: one chunk of guest data, with zero runs marked and compressed streams fetched raw.</summary>
        private static void ReadChunk(VirtualDisk source, Chunk chunk, int clusterSize, ConvertOptions o)
        {
            int clusters = (chunk.Length + clusterSize - 1) / clusterSize;
            chunk.Data = new byte[chunk.Length];
            chunk.KnownZero = new bool[clusters];
            for (int i = 0; i < clusters; i++) chunk.KnownZero[i] = true;
            long end = chunk.Offset + chunk.Length;
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
                        var stream = new byte[image.ClusterSize * 2 + 1024];
                        var pending = new PendingCluster
                        {
                            ClusterStart = clusterStart, Stream = stream, ClusterSize = image.ClusterSize,
                            Type = image.Header.CompressionType,
                        };
                        pending.StreamLength = image.ReadCompressedStream(e.L2Raw, stream);
                        chunk.Inflate.Add(pending);
                    }
                    else source.Read(pos, chunk.Data, at, n);
                }
                pos += n;
            }
        }

        private static Qcow2Image CompressedSource(VirtualDisk layer)
        {
            if (layer is Qcow2Image q) return q;
            if (layer is Qcow2SnapshotView v) return v.Image;
            return null;
        }

        /// <summary>Worker thread: inflate fetched streams, classify each destination cluster, compress.</summary>
        private static void ProcessChunk(Chunk chunk, int clusterSize, ConvertOptions o, VirtualDisk backing, Func<Qcow2CompressionType, ClusterCodec> codec)
        {
            int clusters = chunk.KnownZero.Length;
            var passThrough = new Dictionary<int, (byte[] stream, int length)>();
            foreach (var p in chunk.Inflate)
            {
                var cluster = new byte[p.ClusterSize];
                if (!codec(p.Type).Decompress(p.Stream, p.StreamLength, cluster, p.ClusterSize, out int consumed))
                    throw new QcowException(QcowErrorKind.Corrupt, null, $"The compressed cluster at guest offset 0x{p.ClusterStart:X} of the source is not a valid stream");
                // Copy the part of the source cluster this chunk covers.
                long from = Math.Max(p.ClusterStart, chunk.Offset);
                long to = Math.Min(p.ClusterStart + p.ClusterSize, chunk.Offset + chunk.Length);
                Array.Copy(cluster, (int)(from - p.ClusterStart), chunk.Data, (int)(from - chunk.Offset), (int)(to - from));
                bool sameShape = o.Compress && p.ClusterSize == clusterSize && p.Type == o.CompressionType &&
                    p.ClusterStart >= chunk.Offset && p.ClusterStart + clusterSize <= chunk.Offset + chunk.Length;
                if (sameShape)
                {
                    var stream = new byte[consumed];
                    Array.Copy(p.Stream, stream, consumed);
                    passThrough[(int)((p.ClusterStart - chunk.Offset) / clusterSize)] = (stream, consumed);
                }
            }

            chunk.Kinds = new ClusterKind[clusters];
            if (o.DestinationFormat == ImageFormat.Raw)
            {
                for (int c = 0; c < clusters; c++) chunk.Kinds[c] = chunk.KnownZero[c] ? ClusterKind.Skip : ClusterKind.Data;
                return;
            }
            chunk.Streams = o.Compress ? new byte[clusters][] : null;
            chunk.StreamLengths = o.Compress ? new int[clusters] : null;
            byte[] backingData = backing != null ? new byte[clusterSize] : null;
            for (int c = 0; c < clusters; c++)
            {
                int at = c * clusterSize;
                int n = Math.Min(clusterSize, chunk.Length - at);
                bool zero = chunk.KnownZero[c] || ZeroDetector.IsZero(chunk.Data, at, n);
                if (backing != null)
                {
                    long guest = chunk.Offset + at;
                    long available = Math.Max(0, Math.Min(n, backing.Length - guest));
                    if (available > 0) backing.Read(guest, backingData, 0, (int)available);
                    Array.Clear(backingData, (int)available, clusterSize - (int)available);
                    bool same = BytesEqual(chunk.Data, at, backingData, n);
                    if (same) { chunk.Kinds[c] = ClusterKind.Skip; continue; }
                    if (zero) { chunk.Kinds[c] = ClusterKind.Zero; continue; }
                }
                else if (zero) { chunk.Kinds[c] = ClusterKind.Skip; continue; }

                if (o.Compress)
                {
                    if (passThrough.TryGetValue(c, out var copy))
                    {
                        chunk.Kinds[c] = ClusterKind.Compressed;
                        chunk.Streams[c] = copy.stream;
                        chunk.StreamLengths[c] = copy.length;
                        continue;
                    }
                    byte[] input = chunk.Data;
                    int inputAt = at;
                    if (n < clusterSize)
                    {
                        // The last cluster of an odd-sized disk is compressed as a whole cluster (zero padded).
                        input = new byte[clusterSize];
                        Array.Copy(chunk.Data, at, input, 0, n);
                        inputAt = 0;
                    }
                    var output = new byte[clusterSize];
                    var slice = inputAt == 0 && input.Length == clusterSize ? input : Slice(input, inputAt, clusterSize);
                    int length = codec(o.CompressionType).Compress(slice, clusterSize, output, clusterSize - 1);
                    if (length > 0)
                    {
                        chunk.Kinds[c] = ClusterKind.Compressed;
                        chunk.Streams[c] = output;
                        chunk.StreamLengths[c] = length;
                        continue;
                    }
                }
                chunk.Kinds[c] = ClusterKind.Data;
            }
        }

        private static byte[] Slice(byte[] data, int at, int length)
        {
            var slice = new byte[length];
            Array.Copy(data, at, slice, 0, Math.Min(length, data.Length - at));
            return slice;
        }

        private static bool BytesEqual(byte[] a, int at, byte[] b, int length) =>
            new ReadOnlySpan<byte>(a, at, length).SequenceEqual(new ReadOnlySpan<byte>(b, 0, length));

        /// <summary>Calling thread: runs of data clusters in one write each, compressed streams packed.</summary>
        private static void WriteQcow2Chunk(Qcow2Image image, Chunk chunk, int clusterSize, QcowConversionResult result, ref long bytesIn, ref long bytesOut)
        {
            long firstCluster = chunk.Offset / clusterSize;
            int clusters = chunk.Kinds.Length;
            if (chunk.Length % clusterSize != 0)
            {
                // The disk ends inside this chunk's last cluster: pad the buffer to whole clusters.
                var padded = new byte[clusters * clusterSize];
                Array.Copy(chunk.Data, padded, chunk.Length);
                chunk.Data = padded;
            }
            for (int c = 0; c < clusters;)
            {
                switch (chunk.Kinds[c])
                {
                    case ClusterKind.Data:
                    {
                        int run = 1;
                        while (c + run < clusters && chunk.Kinds[c + run] == ClusterKind.Data) run++;
                        image.WriteNewClusters(firstCluster + c, chunk.Data, c * clusterSize, run);
                        result.DataClusters += run;
                        bytesIn += (long)run * clusterSize;
                        bytesOut += (long)run * clusterSize;
                        c += run;
                        break;
                    }
                    case ClusterKind.Compressed:
                        image.WriteCompressedCluster(firstCluster + c, chunk.Streams[c], chunk.StreamLengths[c]);
                        result.CompressedClusters++;
                        bytesIn += clusterSize;
                        bytesOut += chunk.StreamLengths[c];
                        c++;
                        break;
                    case ClusterKind.Zero:
                        image.WriteZeroes((firstCluster + c) * (long)clusterSize, Math.Min(clusterSize, image.Length - (firstCluster + c) * (long)clusterSize));
                        result.ZeroClusters++;
                        c++;
                        break;
                    default:
                        if (chunk.KnownZero[c] || ZeroDetector.IsZero(chunk.Data, c * clusterSize, Math.Min(clusterSize, chunk.Data.Length - c * clusterSize)))
                            result.ZeroClusters++;
                        c++;
                        break;
                }
            }
        }

        /// <summary>Calling thread: data written at 4 KiB granularity, all-zero blocks left as holes.</summary>
        private static void WriteRawChunk(IHostFile file, Chunk chunk, QcowConversionResult result, ref long bytesIn, ref long bytesOut)
        {
            const int block = 4096;
            int clusterSize = chunk.Kinds.Length == 0 ? block : Math.Max(block, (chunk.Length + chunk.Kinds.Length - 1) / chunk.Kinds.Length);
            for (int c = 0; c < chunk.Kinds.Length; c++)
            {
                int at = c * clusterSize;
                int n = Math.Min(clusterSize, chunk.Length - at);
                if (chunk.Kinds[c] == ClusterKind.Skip) { result.ZeroClusters++; continue; }
                bool wrote = false;
                for (int b = at; b < at + n;)
                {
                    int len = Math.Min(block, at + n - b);
                    if (ZeroDetector.IsZero(chunk.Data, b, len)) { b += len; continue; }
                    int runEnd = b + len;
                    while (runEnd < at + n && !ZeroDetector.IsZero(chunk.Data, runEnd, Math.Min(block, at + n - runEnd)))
                        runEnd += Math.Min(block, at + n - runEnd);
                    file.WriteAt(chunk.Offset + b, chunk.Data, b, runEnd - b);
                    bytesIn += runEnd - b;
                    bytesOut += runEnd - b;
                    wrote = true;
                    b = runEnd;
                }
                if (wrote) result.DataClusters++;
                else result.ZeroClusters++;
            }
        }
    }
}
