using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using QcowPS.Engine.Compression;
using QcowPS.Engine.IO;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine.Operations.Conversion
{
    /// <summary>
    /// One conversion's threads (QEMU's qcow2-threads.c is the model: thread mechanics in small named
    /// methods). Readers take chunks from a shared cursor and read them; workers inflate, classify and
    /// compress them (and, for qcow2, copy mapped data into the file); the calling thread writes the
    /// chunks in order. At most a fixed number of chunks are in flight, with buffers from one pool.
    /// The first failure of any thread is kept in <see cref="_failure"/>, cancels the others, and is
    /// rethrown on the calling thread. What happens to a chunk at each stage: ConversionPipeline.Chunks.cs.
    /// </summary>
    internal sealed partial class ConversionPipeline : IDisposable
    {
        /// <summary>How long a waiting thread sleeps before it looks at cancellation again.</summary>
        private const int WaitSliceMilliseconds = 200;

        // What is converted, and where to.
        private readonly VirtualDisk _source;
        private readonly ConvertOptions _options;
        private readonly VirtualDisk _backing;        // the destination's backing file, or null
        private readonly Qcow2Image _qcow;            // the qcow2 destination, or null
        private readonly IHostFile _rawFile;          // the raw destination, or null
        private readonly long _size;
        private readonly int _clusterSize;
        private readonly int _chunkBytes;
        private readonly bool _kernelCopy;
        private readonly int _workerCount;
        private readonly int _readerCount;

        // The cursor: readers take chunk numbers in turn under _cursorGate.
        private readonly object _cursorGate = new object();
        private readonly List<(long Start, long End)> _copyRanges;   // -Bitmap: the dirty ranges, else null
        private int _copyRangeIndex;
        private long _cursor;
        private long _nextSequence;

        // The queues: chunks for the workers, and finished chunks by sequence number for the writer.
        private readonly WorkQueue<ConversionChunk> _todo = new WorkQueue<ConversionChunk>();
        private readonly object _doneGate = new object();
        private readonly Dictionary<long, ConversionChunk> _done = new Dictionary<long, ConversionChunk>();
        private long _chunkTotal = -1;        // how many chunks there are, once the readers have reached the end
        private int _pendingWrites;           // mapped chunks queued for a worker to copy into the file
        private int _producersLeft;           // readers and the writer: the work queue ends when all are done

        // In flight: bounded memory, at most this many chunks exist at once (read, queued,
        // compressing or waiting to be written in order), and their buffers come from one pool.
        private readonly ChunkSlots _inFlight;
        private readonly ArrayPool<byte> _pool;

        // Failure: the first exception of any thread; cancelling _cancel stops the others.
        private readonly CancellationTokenSource _cancel;
        private Exception _failure;

        private readonly List<Thread> _threads = new List<Thread>();

        public ConversionCounters Counters { get; } = new ConversionCounters();
        public ConversionTiming Timing { get; }

        public ConversionPipeline(VirtualDisk source, ConvertOptions options, VirtualDisk backing, Qcow2Image qcow, IHostFile rawFile,
            int clusterSize, int chunkBytes, List<(long Start, long End)> copyRanges, bool kernelCopy, ConversionTiming timing)
        {
            _source = source;
            _options = options;
            _backing = backing;
            _qcow = qcow;
            _rawFile = rawFile;
            _size = source.Length;
            _clusterSize = clusterSize;
            _chunkBytes = chunkBytes;
            _copyRanges = copyRanges;
            _kernelCopy = kernelCopy;
            Timing = timing ?? new ConversionTiming();
            _workerCount = Math.Max(1, Math.Min(options.Threads, 64));
            // With two readers, reading from the page cache uses both cores; the writer puts the chunks back in order.
            _readerCount = _workerCount > 1 ? 2 : 1;
            _producersLeft = _readerCount + 1;
            int slots = _workerCount * 3 + 2;
            _inFlight = new ChunkSlots(slots);
            _pool = ArrayPool<byte>.Create(Math.Max(chunkBytes, (2 << 21) * 2 + 1024), slots * 4 + 16);
            _cancel = CancellationTokenSource.CreateLinkedTokenSource(options.Cancellation);
        }

        /// <summary>Runs the conversion to its end on the calling thread (the writer); throws the first failure of any thread.</summary>
        public void Run()
        {
            for (int r = 0; r < _readerCount; r++) StartThread(ReadLoop, "QcowPS convert reader " + r);
            for (int w = 0; w < _workerCount; w++) StartThread(WorkLoop, "QcowPS convert worker " + w);
            try
            {
                WriteInOrder();
                ProducerDone();
                WaitForPendingWrites();
            }
            finally
            {
                _cancel.Cancel();
                foreach (var thread in _threads) thread.Join();
            }
        }

        public void Dispose() => _cancel.Dispose();

        private void StartThread(Action loop, string name)
        {
            var thread = new Thread(() => loop()) { IsBackground = true, Name = name };
            _threads.Add(thread);
            thread.Start();
        }

        // ---- readers ----

        /// <summary>Reader thread: takes the next chunk from the cursor and reads it, until the end of the source.</summary>
        private void ReadLoop()
        {
            try
            {
                while (true)
                {
                    _inFlight.Wait(_cancel.Token);
                    var chunk = TakeNextChunk();
                    if (chunk == null)
                    {
                        _inFlight.Release();
                        break;
                    }
                    if (chunk.Skipped > 0)
                    {
                        PublishDone(chunk);
                        continue;
                    }
                    long start = Stopwatch.GetTimestamp();
                    ReadChunk(_source, chunk, _clusterSize, _pool, _kernelCopy);
                    Timing.AddRead(start);
                    _todo.Add(chunk);
                }
            }
            catch (OperationCanceledException) { }
            catch (Exception e) { Fail(e); }
            finally
            {
                ProducerDone();
            }
        }

        /// <summary>
        /// The next chunk at the cursor, or null at the end (then the chunk total is known). A run
        /// stored nowhere in the chain becomes one empty chunk, so a sparse 1 TiB disk is not walked a
        /// megabyte at a time. With a backing file for the destination, a run is skipped only where the
        /// backing image stores nothing either (elsewhere it is compared with what the backing holds).
        /// </summary>
        private ConversionChunk TakeNextChunk()
        {
            lock (_cursorGate)
            {
                if (_cursor >= _size)
                {
                    SetChunkTotal(_nextSequence);
                    return null;
                }
                long offset = _cursor;
                long rangeEnd = _size;
                if (_copyRanges != null)
                {
                    while (_copyRangeIndex < _copyRanges.Count && _copyRanges[_copyRangeIndex].End <= offset) _copyRangeIndex++;
                    long next = _copyRangeIndex < _copyRanges.Count ? Math.Min(_size, _copyRanges[_copyRangeIndex].Start) : _size;
                    if (next > offset)
                    {
                        // Clean in the bitmap: the previous backup (the backing file) already holds it.
                        _cursor = next;
                        return new ConversionChunk { Sequence = _nextSequence++, Offset = offset, Skipped = next - offset };
                    }
                    rangeEnd = Math.Min(_size, _copyRanges[_copyRangeIndex].End);
                }
                long skipTo = Math.Min(rangeEnd, EndOfUnstoredRun(_source, offset, _size, _chunkBytes));
                if (_backing != null && skipTo > offset) skipTo = Math.Min(skipTo, EndOfUnstoredRun(_backing, offset, _size, _chunkBytes));
                var chunk = skipTo > offset
                    ? new ConversionChunk { Sequence = _nextSequence++, Offset = offset, Skipped = skipTo - offset }
                    : new ConversionChunk { Sequence = _nextSequence++, Offset = offset, Length = (int)Math.Min(_chunkBytes, rangeEnd - offset) };
                _cursor = offset + chunk.Length + chunk.Skipped;
                return chunk;
            }
        }

        // ---- workers ----

        /// <summary>Worker thread: processes read chunks, and copies mapped qcow2 data into the file.</summary>
        private void WorkLoop()
        {
            // Codecs keep native state: one set per worker, created on first use.
            var codecs = new Dictionary<Qcow2CompressionType, ClusterCodec>();
            ClusterCodec Codec(Qcow2CompressionType type)
            {
                if (!codecs.TryGetValue(type, out var codec))
                    codecs[type] = codec = ClusterCodec.Create(type, type == _options.CompressionType ? _options.CompressionLevel : 0);
                return codec;
            }
            try
            {
                for (var chunk = _todo.Take(_cancel.Token); chunk != null; chunk = _todo.Take(_cancel.Token))
                {
                    long start = Stopwatch.GetTimestamp();
                    if (chunk.Mapped)
                    {
                        WriteMappedData(chunk);
                        Timing.AddWork(start);
                        WriteFinished();
                        continue;
                    }
                    ProcessChunk(chunk, _clusterSize, _options, _backing, Codec, _pool);
                    // Raw output has no order to keep: each worker writes its own chunk (pwrite).
                    if (_rawFile != null) WriteRawChunk(_rawFile, chunk, Counters);
                    Timing.AddWork(start);
                    PublishDone(chunk);
                }
            }
            catch (OperationCanceledException) { }
            catch (Exception e) { Fail(e); }
            finally
            {
                foreach (var codec in codecs.Values) codec.Dispose();
            }
        }

        /// <summary>
        /// qcow2 data the writer has mapped, written by a worker, so that copying it into the file runs
        /// beside the writer instead of in turn with it; then the chunk's buffers and slot are free.
        /// </summary>
        private void WriteMappedData(ConversionChunk chunk)
        {
            var data = _qcow.DataFile;
            foreach (var w in chunk.DataWrites) WriteFromChunk(data, w.HostOffset, chunk, w.BufferOffset, w.Length);
            ReleaseChunk(chunk);
        }

        // ---- the writer (the calling thread) ----

        /// <summary>Writes every chunk in sequence order; qcow2 data runs are mapped here and copied by a worker.</summary>
        private void WriteInOrder()
        {
            for (long sequence = 0; ; sequence++)
            {
                var chunk = WaitForChunk(sequence);
                if (chunk == null) return;  // every chunk is written
                if (chunk.Skipped > 0)
                {
                    Interlocked.Add(ref Counters.Zero, (chunk.Skipped + _clusterSize - 1) / _clusterSize);
                    _inFlight.Release();
                    _options.Progress?.Invoke(chunk.Offset + chunk.Skipped, _size);
                    continue;
                }
                long start = Stopwatch.GetTimestamp();
                if (_qcow != null) WriteQcow2Chunk(_qcow, chunk, _clusterSize, Counters);
                Timing.AddWrite(start);
                if (chunk.DataWrites != null && chunk.DataWrites.Count > 0) QueueMappedData(chunk);
                else ReleaseChunk(chunk);
                _options.Progress?.Invoke(chunk.Offset + chunk.Length, _size);
            }
        }

        /// <summary>Chunk number 'sequence' once a worker or reader has finished it; null past the last chunk.</summary>
        private ConversionChunk WaitForChunk(long sequence)
        {
            lock (_doneGate)
            {
                ConversionChunk chunk;
                while (!_done.TryGetValue(sequence, out chunk) && _failure == null && !(_chunkTotal >= 0 && sequence >= _chunkTotal))
                {
                    if (_options.Cancellation.IsCancellationRequested) break;
                    Monitor.Wait(_doneGate, WaitSliceMilliseconds);
                }
                ThrowIfFailed();
                _options.Cancellation.ThrowIfCancellationRequested();
                if (chunk != null) _done.Remove(sequence);
                return chunk;
            }
        }

        private void QueueMappedData(ConversionChunk chunk)
        {
            lock (_doneGate) _pendingWrites++;
            chunk.Mapped = true;
            _todo.AddUrgent(chunk);  // a worker writes the data and frees the chunk
        }

        /// <summary>After the last chunk: waits until the workers have copied every mapped chunk into the file.</summary>
        private void WaitForPendingWrites()
        {
            lock (_doneGate)
            {
                while (_pendingWrites > 0 && _failure == null) Monitor.Wait(_doneGate, WaitSliceMilliseconds);
                ThrowIfFailed();
            }
        }

        // ---- shared mechanics ----

        private void PublishDone(ConversionChunk chunk)
        {
            lock (_doneGate)
            {
                _done[chunk.Sequence] = chunk;
                Monitor.PulseAll(_doneGate);
            }
        }

        private void SetChunkTotal(long total)
        {
            lock (_doneGate)
            {
                _chunkTotal = total;
                Monitor.PulseAll(_doneGate);
            }
        }

        private void WriteFinished()
        {
            lock (_doneGate)
            {
                _pendingWrites--;
                Monitor.PulseAll(_doneGate);
            }
        }

        private void ReleaseChunk(ConversionChunk chunk)
        {
            ReturnBuffers(chunk, _pool);
            _inFlight.Release();
        }

        /// <summary>The work queue ends when the readers are done and the writer has queued its last data writes.</summary>
        private void ProducerDone()
        {
            if (Interlocked.Decrement(ref _producersLeft) == 0) _todo.Complete();
        }

        /// <summary>Keeps the first failure, wakes the writer and cancels every other thread.</summary>
        private void Fail(Exception e)
        {
            lock (_doneGate)
            {
                if (_failure == null) _failure = e;
                Monitor.PulseAll(_doneGate);
            }
            try { _cancel.Cancel(); } catch (ObjectDisposedException) { }
        }

        /// <summary>On the writer: a worker's or reader's failure, as a QcowException thrown here (the original kept as inner).</summary>
        private void ThrowIfFailed()
        {
            var e = _failure;
            if (e == null) return;
            if (e is Nbd.NbdException nbd) throw nbd.Again();  // keeps the NBD error id and the server's error name
            throw e is QcowException q
                ? new QcowException(q.Kind, q.FilePath, q.Message, q) { Operation = q.Operation }
                : new QcowException(QcowErrorKind.IoError, null, e.Message, e);
        }
    }
}
