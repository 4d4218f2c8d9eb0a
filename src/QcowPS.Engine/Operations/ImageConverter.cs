using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Runtime.CompilerServices;
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
        /// <summary>Compression level (zlib 1-9, zstd 1-19); 0: QEMU's default for the type (zlib 6, zstd 3).</summary>
        public int CompressionLevel { get; set; }
        public int ClusterSize { get; set; } = 65536;
        public int Version { get; set; } = 3;
        public int RefcountBits { get; set; } = 16;
        /// <summary>Backing file of the destination, as stored; only what differs from it is written.</summary>
        public string BackingFile { get; set; }
        public string BackingFormat { get; set; }
        /// <summary>Worker threads for compression and decompression.</summary>
        public int Threads { get; set; } = Environment.ProcessorCount;
        public bool Overwrite { get; set; }
        /// <summary>
        /// fsync the destination before it is renamed into place. Off by default, like qemu-img
        /// convert (whose default cache mode for the destination is "unsafe": no flush at all).
        /// </summary>
        public bool Sync { get; set; }
        public CancellationToken Cancellation { get; set; }
        /// <summary>Called on the calling thread with (bytes done, total bytes).</summary>
        public Action<long, long> Progress { get; set; }
        /// <summary>
        /// Whether runs stored as they are in a source file go to the destination by copy_file_range
        /// (default: QCOWPS_KERNEL_COPY, else Auto: only where the destination's file system shares extents).
        /// </summary>
        public KernelCopyMode KernelCopyMode { get; set; } = KernelCopy.DefaultMode();
        /// <summary>Wraps the destination's host file (tests simulate a full disk here).</summary>
        public Func<IHostFile, IHostFile> WrapDestination { get; set; }
        /// <summary>
        /// Incremental backup: only the ranges this persistent bitmap of the (qcow2) source marks
        /// dirty are copied; the rest is left unallocated so the backing file (the previous backup)
        /// shows through. Needs BackingFile.
        /// </summary>
        public string Bitmap { get; set; }
        /// <summary>Copy the source's persistent bitmaps to the qcow2 destination (qemu-img convert --bitmaps).</summary>
        public bool CopyBitmaps { get; set; }
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

        /// <summary>Totals updated by several threads.</summary>
        private sealed class Counters
        {
            public long Data, Zero, Compressed, BytesIn, BytesOut;
        }

        private sealed class Chunk
        {
            public long Sequence;
            public long Offset;
            public int Length;
            public long Skipped;              // a run that holds nothing in the whole chain: no buffer, nothing to write
            public byte[] Data;
            public bool[] KnownZero;          // per destination cluster: no layer stores anything there
            public ClusterKind[] Kinds;
            public byte[][] Streams;          // compressed output per cluster
            public int[] StreamLengths;
            public List<PendingCluster> Inflate = new List<PendingCluster>();
            public List<Qcow2Image.HostWrite> DataWrites;   // qcow2 data runs the writer mapped, for a worker to write
            public List<StoredRun> Stored;                  // where the chunk's bytes lie as they are in a source file (kernel copy only)
            public bool Mapped;                             // in the queue again, for its data writes
            public Exception Error;
        }

        /// <summary>Bytes of a chunk that a source file holds as they are, in order: the kernel may copy them from there.</summary>
        private struct StoredRun
        {
            public int At;
            public int Length;
            public IHostFile File;
            public long HostOffset;
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
            if (DiskImage.LayerWithFile(source, destination) != null)
                throw new QcowException(QcowErrorKind.InvalidArgument, destination, $"The destination '{destination}' is the source or one of its backing files");
            NewFile.CheckCanCreate(destination, o.Overwrite);

            int threads = Math.Max(1, Math.Min(o.Threads, 64));
            long size = source.Length;
            var bitmapSource = BitmapSource(source, destination, o);
            var createOptions = new Qcow2CreateOptions
            {
                Size = size, ClusterSize = o.ClusterSize, Version = o.Version, RefcountBits = o.RefcountBits,
                CompressionType = o.CompressionType, BackingFile = o.BackingFile, BackingFormat = o.BackingFormat,
            };
            string backingFormat = null;
            if (o.DestinationFormat == ImageFormat.Qcow2)
            {
                // qcow2 sizes are whole sectors (as qemu-img rounds them); the tail past the source reads as zeros.
                createOptions.Size = (size + 511) & ~511L;
                Qcow2Creator.Validate(destination, createOptions, out backingFormat);
            }
            int clusterSize = o.DestinationFormat == ImageFormat.Qcow2 ? o.ClusterSize : 65536;
            int chunkClusters = Math.Max(1, (1 << 20) / clusterSize);
            int chunkBytes = chunkClusters * clusterSize;
            bool kernelCopy = KernelCopy.UseFor(o.KernelCopyMode, destination);
            // Dirty ranges widened to whole chunks: within them, clusters equal to the backing file are still skipped.
            var copyRanges = o.Bitmap != null ? ChunkRanges(bitmapSource.GetBitmapExtents(o.Bitmap), chunkBytes) : null;
            int copyRangeIndex = 0;

            string temp = NewFile.TemporaryPathFor(destination);
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
                        Qcow2Creator.WriteEmptyImage(file, createOptions, createOptions.Size.Value, backingFormat);
                        qcow = Qcow2Image.Open(file, new OpenOptions { Writable = true });
                    }
                    else
                    {
                        rawFile = FileHostFile.Create(temp, false);
                        if (o.WrapDestination != null) rawFile = o.WrapDestination(rawFile);
                    }

                    var counters = new Counters();
                    // Bounded memory: at most 'slots' chunks exist at once (read, queued, compressing or
                    // waiting to be written in order), and their buffers come from one pool.
                    int slots = threads * 3 + 2;
                    var inFlight = new Slots(slots);
                    var pool = ArrayPool<byte>.Create(Math.Max(chunkBytes, (2 << 21) * 2 + 1024), slots * 4 + 16);
                    var todo = new WorkQueue<Chunk>();
                    var done = new Dictionary<long, Chunk>();
                    var doneGate = new object();
                    long chunkTotal = -1;  // how many chunks there are, once the readers have reached the end

                    void Fail(Exception e)
                    {
                        lock (doneGate)
                        {
                            done[-1] = new Chunk { Error = e };
                            Monitor.PulseAll(doneGate);
                        }
                        try { failure.Cancel(); } catch (ObjectDisposedException) { }
                    }

                    // Readers take chunk numbers in turn; with two of them, reading from the page cache
                    // uses both cores. The writer puts the chunks back in order.
                    int readerCount = threads > 1 ? 2 : 1;
                    // Chunks are taken under a lock: a reader that finds a run stored nowhere in the chain
                    // makes it one empty chunk, so a sparse 1 TiB disk is not walked a megabyte at a time.
                    // With a backing file for the destination, a run is skipped only where the backing image
                    // stores nothing either (elsewhere it is compared with what the backing holds).
                    var cursorGate = new object();
                    long cursor = 0, nextSequence = 0;
                    // The queue ends when the readers are done and the writer has queued its last data writes.
                    int producersLeft = readerCount + 1;
                    void ProducerDone()
                    {
                        if (Interlocked.Decrement(ref producersLeft) == 0) todo.Complete();
                    }
                    int pendingWrites = 0;
                    var readers = new List<Thread>();
                    for (int r = 0; r < readerCount; r++)
                    {
                        readers.Add(new Thread(() =>
                        {
                            try
                            {
                                while (true)
                                {
                                    inFlight.Wait(token);
                                    Chunk chunk;
                                    lock (cursorGate)
                                    {
                                        if (cursor >= size)
                                        {
                                            inFlight.Release();
                                            lock (doneGate)
                                            {
                                                chunkTotal = nextSequence;
                                                Monitor.PulseAll(doneGate);
                                            }
                                            break;
                                        }
                                        long offset = cursor;
                                        long rangeEnd = size;
                                        if (copyRanges != null)
                                        {
                                            while (copyRangeIndex < copyRanges.Count && copyRanges[copyRangeIndex].End <= offset) copyRangeIndex++;
                                            long next = copyRangeIndex < copyRanges.Count ? Math.Min(size, copyRanges[copyRangeIndex].Start) : size;
                                            if (next > offset)
                                            {
                                                // Clean in the bitmap: the previous backup (the backing file) already holds it.
                                                chunk = new Chunk { Sequence = nextSequence++, Offset = offset, Skipped = next - offset };
                                                cursor = next;
                                                goto queued;
                                            }
                                            rangeEnd = Math.Min(size, copyRanges[copyRangeIndex].End);
                                        }
                                        long skipTo = Math.Min(rangeEnd, EndOfUnstoredRun(source, offset, size, chunkBytes));
                                        if (backing != null && skipTo > offset) skipTo = Math.Min(skipTo, EndOfUnstoredRun(backing, offset, size, chunkBytes));
                                        chunk = skipTo > offset
                                            ? new Chunk { Sequence = nextSequence++, Offset = offset, Skipped = skipTo - offset }
                                            : new Chunk { Sequence = nextSequence++, Offset = offset, Length = (int)Math.Min(chunkBytes, rangeEnd - offset) };
                                        cursor = offset + chunk.Length + chunk.Skipped;
                                    queued:;
                                    }
                                    if (chunk.Skipped > 0)
                                    {
                                        lock (doneGate)
                                        {
                                            done[chunk.Sequence] = chunk;
                                            Monitor.PulseAll(doneGate);
                                        }
                                        continue;
                                    }
                                    long t0 = Stopwatch.GetTimestamp();
                                    ReadChunk(source, chunk, clusterSize, pool, kernelCopy);
                                    Interlocked.Add(ref s_readTicks, Stopwatch.GetTimestamp() - t0);
                                    todo.Add(chunk);
                                }
                            }
                            catch (OperationCanceledException) { }
                            catch (Exception e) { Fail(e); }
                            finally
                            {
                                ProducerDone();
                            }
                        }) { IsBackground = true, Name = "QcowPS convert reader " + r });
                    }

                    var workers = new List<Thread>();
                    for (int t = 0; t < threads; t++)
                    {
                        workers.Add(new Thread(() =>
                        {
                            var codecs = new Dictionary<Qcow2CompressionType, ClusterCodec>();
                            ClusterCodec Codec(Qcow2CompressionType type)
                            {
                                if (!codecs.TryGetValue(type, out var c)) codecs[type] = c = ClusterCodec.Create(type, type == o.CompressionType ? o.CompressionLevel : 0);
                                return c;
                            }
                            try
                            {
                                for (var chunk = todo.Take(token); chunk != null; chunk = todo.Take(token))
                                {
                                    long t0 = Stopwatch.GetTimestamp();
                                    if (chunk.Mapped)
                                    {
                                        // qcow2 data the writer has mapped: written here, so that copying it into the
                                        // file runs beside the writer instead of in turn with it.
                                        var data = qcow.DataFile;
                                        foreach (var w in chunk.DataWrites) WriteFromChunk(data, w.HostOffset, chunk, w.BufferOffset, w.Length);
                                        ReturnBuffers(chunk, pool);
                                        inFlight.Release();
                                        Interlocked.Add(ref s_workTicks, Stopwatch.GetTimestamp() - t0);
                                        lock (doneGate)
                                        {
                                            pendingWrites--;
                                            Monitor.PulseAll(doneGate);
                                        }
                                        continue;
                                    }
                                    ProcessChunk(chunk, clusterSize, o, backing, Codec, pool);
                                    // Raw output has no order to keep: each worker writes its own chunk (pwrite).
                                    if (rawFile != null) WriteRawChunk(rawFile, chunk, counters);
                                    Interlocked.Add(ref s_workTicks, Stopwatch.GetTimestamp() - t0);
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
                    foreach (var r in readers) r.Start();
                    foreach (var w in workers) w.Start();

                    try
                    {
                        for (long seq = 0; ; seq++)
                        {
                            Chunk chunk;
                            lock (doneGate)
                            {
                                while (!done.TryGetValue(seq, out chunk) && !done.ContainsKey(-1) && !(chunkTotal >= 0 && seq >= chunkTotal))
                                {
                                    if (o.Cancellation.IsCancellationRequested) break;
                                    Monitor.Wait(doneGate, 200);
                                }
                                if (done.TryGetValue(-1, out var failed)) throw Rethrow(failed.Error);
                                o.Cancellation.ThrowIfCancellationRequested();
                                if (chunk == null) break;  // every chunk is written
                                done.Remove(seq);
                            }
                            if (chunk.Skipped > 0)
                            {
                                Interlocked.Add(ref counters.Zero, (chunk.Skipped + clusterSize - 1) / clusterSize);
                                inFlight.Release();
                                o.Progress?.Invoke(chunk.Offset + chunk.Skipped, size);
                                continue;
                            }
                            long w0 = Stopwatch.GetTimestamp();
                            if (qcow != null) WriteQcow2Chunk(qcow, chunk, clusterSize, counters);
                            Interlocked.Add(ref s_writeTicks, Stopwatch.GetTimestamp() - w0);
                            if (chunk.DataWrites != null && chunk.DataWrites.Count > 0)
                            {
                                lock (doneGate) pendingWrites++;
                                chunk.Mapped = true;
                                todo.AddUrgent(chunk);  // a worker writes the data and frees the chunk
                            }
                            else
                            {
                                ReturnBuffers(chunk, pool);
                                inFlight.Release();
                            }
                            o.Progress?.Invoke(chunk.Offset + chunk.Length, size);
                        }
                        ProducerDone();
                        lock (doneGate)
                        {
                            while (pendingWrites > 0 && !done.ContainsKey(-1)) Monitor.Wait(doneGate, 200);
                            if (done.TryGetValue(-1, out var failed)) throw Rethrow(failed.Error);
                        }
                    }
                    finally
                    {
                        failure.Cancel();
                        foreach (var r in readers) r.Join();
                        foreach (var w in workers) w.Join();
                    }

                    if (qcow != null)
                    {
                        if (o.CopyBitmaps) CopyBitmaps(bitmapSource, qcow);
                        qcow.FlushForConversion(o.Sync);
                        qcow.Dispose();
                        qcow = null;
                    }
                    else
                    {
                        rawFile.SetLength(size);
                        if (o.Sync) rawFile.Flush();
                        rawFile.Dispose();
                        rawFile = null;
                    }
                    NewFile.MoveIntoPlace(temp, destination, o.Overwrite);
                    if (o.DestinationFormat == ImageFormat.Qcow2) result.VirtualSize = createOptions.Size.Value;
                    result.DataClusters = counters.Data;
                    result.ZeroClusters = counters.Zero;
                    result.CompressedClusters = counters.Compressed;
                    result.CompressionRatio = counters.BytesOut == 0 ? 1.0 : (double)counters.BytesIn / counters.BytesOut;
                    result.FileSize = new FileInfo(destination).Length;
                    result.Duration = watch.Elapsed;
                    return result;
                }
                catch
                {
                    try { qcow?.Dispose(); } catch (Exception) { }
                    try { rawFile?.Dispose(); } catch (Exception) { }
                    NewFile.Discard(temp);
                    throw;
                }
                finally
                {
                    backing?.Dispose();
                }
            }
        }

        /// <summary>The qcow2 source whose bitmaps -Bitmap or -Bitmaps use, checked before anything is written; or null.</summary>
        private static Qcow2Image BitmapSource(VirtualDisk source, string destination, ConvertOptions o)
        {
            if (o.Bitmap == null && !o.CopyBitmaps) return null;
            var image = source as Qcow2Image ??
                throw new QcowException(QcowErrorKind.InvalidArgument, source.Path, $"'{source.Path}' is a {source.Format} image; persistent bitmaps need a qcow2 source");
            if (o.DestinationFormat != ImageFormat.Qcow2)
                throw new QcowException(QcowErrorKind.InvalidArgument, destination, "Bitmaps can only be used with a qcow2 destination");
            if (o.Bitmap != null)
            {
                if (o.BackingFile == null)
                    throw new QcowException(QcowErrorKind.InvalidArgument, destination,
                        "An incremental backup (-Bitmap) needs the previous backup as -BackingFile; without it the increment would not be a whole disk");
                image.GetBitmapExtents(o.Bitmap, 0, 0);  // exists, usable, not in use: else the error now
            }
            if (o.CopyBitmaps)
                foreach (var b in image.Bitmaps)
                    if (b.InUse || b.Unusable != null)
                        throw new QcowException(QcowErrorKind.BitmapInUse, source.Path,
                            $"Bitmap '{b.Name}' of '{source.Path}' is {(b.InUse ? "in use (possibly stale)" : "unusable")} and cannot be copied; remove it first (qemu-img convert --bitmaps refuses it too)");
            return image;
        }

        /// <summary>The dirty runs, widened to whole chunks and merged, in order.</summary>
        private static List<(long Start, long End)> ChunkRanges(IEnumerable<QcowBitmapExtent> extents, int chunkBytes)
        {
            var ranges = new List<(long Start, long End)>();
            foreach (var e in extents)
            {
                if (!e.Dirty) continue;
                long start = e.Offset / chunkBytes * chunkBytes;
                long end = (e.Offset + e.Length + chunkBytes - 1) / chunkBytes * chunkBytes;
                if (ranges.Count > 0 && ranges[ranges.Count - 1].End >= start)
                    ranges[ranges.Count - 1] = (ranges[ranges.Count - 1].Start, Math.Max(end, ranges[ranges.Count - 1].End));
                else ranges.Add((start, end));
            }
            return ranges;
        }

        /// <summary>qemu-img convert --bitmaps: each bitmap again in the destination, same name, granularity, state and bits.</summary>
        private static void CopyBitmaps(Qcow2Image source, Qcow2Image destination)
        {
            foreach (var b in source.Bitmaps)
            {
                destination.AddBitmap(b.Name, b.GranularityBits, b.Enabled);
                destination.MergeBitmap(b.Name, source.GetBitmapExtents(b.Name));
            }
        }

        private static long s_readTicks, s_workTicks, s_writeTicks;

        internal static void ResetTiming() => s_readTicks = s_workTicks = s_writeTicks = 0;

        /// <summary>Seconds spent reading, processing (summed over workers) and writing, for profiling.</summary>
        internal static string TimingReport() =>
            $"read {s_readTicks / (double)Stopwatch.Frequency:F2} s, work {s_workTicks / (double)Stopwatch.Frequency:F2} s, write {s_writeTicks / (double)Stopwatch.Frequency:F2} s";

        private static Exception Rethrow(Exception e) =>
            e is Nbd.NbdException n ? n.Again() :  // keeps the NBD error id and the server's error name
            e is QcowException q ? new QcowException(q.Kind, q.FilePath, q.Message, q) { Operation = q.Operation } : new QcowException(QcowErrorKind.IoError, null, e.Message, e);

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
        [MethodImpl(ZeroDetector.Hot)]
        private static void ReadChunk(VirtualDisk source, Chunk chunk, int clusterSize, ArrayPool<byte> pool, bool kernelCopy)
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
                        var file = kernelCopy && e.Type == ClusterType.Normal ? e.Layer.StoredDataFile : null;
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
        [MethodImpl(ZeroDetector.Hot)]
        private static void ProcessChunk(Chunk chunk, int clusterSize, ConvertOptions o, VirtualDisk backing,
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
                bool sameShape = o.Compress && p.ClusterSize == clusterSize && p.Type == o.CompressionType &&
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
                    if (chunk.KnownZero[c]) Array.Clear(chunk.Data, at, n);  // compared and perhaps written below
                    long guest = chunk.Offset + at;
                    long available = Math.Max(0, Math.Min(n, backing.Length - guest));
                    if (available > 0) backing.Read(guest, backingData, 0, (int)available);
                    Array.Clear(backingData, (int)available, clusterSize - (int)available);
                    bool same = BytesEqual(chunk.Data, at, backingData, n);
                    if (same) { chunk.Kinds[c] = ClusterKind.Skip; continue; }
                    // Zeros over backing data: the zero flag on v3; v2 has none, so zeros are written as data.
                    if (zero) { chunk.Kinds[c] = o.Version >= 3 ? ClusterKind.Zero : ClusterKind.Data; continue; }
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
                    // The last cluster of an odd-sized disk is compressed as a whole cluster: zero the padding.
                    if (n < clusterSize) Array.Clear(chunk.Data, at + n, clusterSize - n);
                    var output = pool.Rent(clusterSize);
                    int length = codec(o.CompressionType).Compress(chunk.Data, at, clusterSize, output, clusterSize - 1);
                    if (length > 0)
                    {
                        chunk.Kinds[c] = ClusterKind.Compressed;
                        chunk.Streams[c] = output;
                        chunk.StreamLengths[c] = length;
                        continue;
                    }
                    pool.Return(output);
                }
                chunk.Kinds[c] = ClusterKind.Data;
            }
            foreach (var leftover in passThrough) if (chunk.Streams == null || !ReferenceEquals(chunk.Streams[leftover.Key], leftover.Value.stream)) pool.Return(leftover.Value.stream);
        }

        /// <summary>
        /// Writes chunk.Data[at..at+length) at offset of file: the parts a source file holds as they are
        /// are copied by the kernel from there, the rest (and whatever the kernel will not copy) from the buffer.
        /// </summary>
        private static void WriteFromChunk(IHostFile file, long offset, Chunk chunk, int at, int length)
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

        private static void ReturnBuffers(Chunk chunk, ArrayPool<byte> pool)
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
        [MethodImpl(ZeroDetector.Hot)]
        private static void WriteQcow2Chunk(Qcow2Image image, Chunk chunk, int clusterSize, Counters result)
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
                    case ClusterKind.Data:
                    {
                        int run = 1;
                        while (c + run < clusters && chunk.Kinds[c + run] == ClusterKind.Data) run++;
                        if (chunk.DataWrites == null) chunk.DataWrites = new List<Qcow2Image.HostWrite>();
                        image.MapNewClusters(firstCluster + c, c * clusterSize, run, chunk.DataWrites);
                        result.Data += run;
                        result.BytesIn += (long)run * clusterSize;
                        result.BytesOut += (long)run * clusterSize;
                        c += run;
                        break;
                    }
                    case ClusterKind.Compressed:
                    {
                        int run = 1;
                        while (c + run < clusters && chunk.Kinds[c + run] == ClusterKind.Compressed) run++;
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
                    case ClusterKind.Zero:
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
        [MethodImpl(ZeroDetector.Hot)]
        private static void WriteRawChunk(IHostFile file, Chunk chunk, Counters result)
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
                    bool zero = chunk.Kinds[c] == ClusterKind.Skip || ZeroDetector.IsZero(chunk.Data, b, len);
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
