using System;
using System.Collections.Generic;
using System.Linq;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine.Nbd
{
    /// <summary>
    /// A disk behind an NBD server, as a VirtualDisk like any image: reads and writes become NBD requests
    /// (split at the server's maximum, aligned to its minimum, several in flight), and the extents come
    /// from BLOCK_STATUS, so conversion, comparison and the read and write cmdlets need no NBD case.
    /// </summary>
    public sealed class NbdDisk : VirtualDisk
    {
        /// <summary>One BLOCK_STATUS request covers at most this much (a power of two, so aligned to any minimum block size).</summary>
        private const int StatusWindow = 1 << 30;
        /// <summary>Reads are cut into pieces of at most this much, all sent before the first is waited for.</summary>
        private const int ReadPiece = 1 << 20;
        /// <summary>Zeroes written as data (servers without WRITE_ZEROES) go out this much at a time.</summary>
        private const int ZeroBufferLength = 1 << 20;

        /// <summary>The first connection: block status, flags, sizes. Reads and writes go over all of _clients.</summary>
        private readonly NbdClient _client;
        private readonly NbdClient[] _clients;
        private int _nextClient;
        private readonly bool _writable;
        private readonly object _statusGate = new object();
        private readonly object _alignGate = new object();
        private long _statusStart, _statusEnd;
        private List<NbdExtent> _allocation, _depth;

        private NbdDisk(NbdClient[] clients, bool writable)
        {
            _clients = clients;
            _client = clients[0];
            _writable = writable;
        }

        /// <summary>
        /// Connects to the export a URI names; a writable open of a read-only export is refused. When the
        /// server sets CAN_MULTI_CONN (its connections see each other's writes, and a flush on one covers
        /// all), up to options.Connections connections are opened; an extra one the server refuses, or
        /// that does not show the same export, is dropped, and the disk goes on with those it has.
        /// </summary>
        public static NbdDisk Open(NbdUri uri, bool writable, NbdClientOptions options = null)
        {
            options = options ?? new NbdClientOptions();
            var client = NbdClient.Connect(uri, options);
            if (writable && client.ReadOnly)
            {
                client.Dispose();
                throw new QcowException(QcowErrorKind.ReadOnly, uri.Text, $"NBD export '{uri.Text}' is read-only");
            }
            var clients = new List<NbdClient> { client };
            if (client.CanMultiConn)
            {
                while (clients.Count < options.Connections)
                {
                    NbdClient extra;
                    try { extra = NbdClient.Connect(uri, options); }
                    catch (NbdException) { break; }  // a server with a connection limit: go on with fewer
                    if (extra.Size != client.Size || extra.TransmissionFlags != client.TransmissionFlags || extra.MinimumBlockSize != client.MinimumBlockSize
                        || extra.MaximumBlockSize != client.MaximumBlockSize || extra.StructuredReplies != client.StructuredReplies)
                    {
                        extra.Dispose();
                        break;
                    }
                    clients.Add(extra);
                }
            }
            return new NbdDisk(clients.ToArray(), writable);
        }

        /// <summary>The connections this disk reads and writes over (several when the server allows multi-conn).</summary>
        public int ConnectionCount => _clients.Length;

        /// <summary>Bytes of data the server sent in read replies, over all connections.</summary>
        public long BytesReceived => _clients.Sum(c => c.BytesReceived);

        /// <summary>The connection for the next request: in turn, so a large read or write keeps every connection busy.</summary>
        private NbdClient NextClient() =>
            _clients.Length == 1 ? _client : _clients[(int)((uint)System.Threading.Interlocked.Increment(ref _nextClient) % (uint)_clients.Length)];

        public static NbdDisk Open(string uri, bool writable, NbdClientOptions options = null) => Open(NbdUri.Parse(uri), writable, options);

        public NbdClient Client => _client;
        public override string Path => _client.Server;
        public override ImageFormat Format => ImageFormat.Nbd;
        public override long Length => _client.Size;
        /// <summary>No host file: the export's size stands for it.</summary>
        public override long FileSize => _client.Size;
        public override bool CanWrite => _writable;

        // ================================================================ extents

        /// <summary>
        /// The run at offset from BLOCK_STATUS: data is Normal, a hole that reads as zeros is Unallocated
        /// (Zero where qemu:allocation-depth says a layer allocated it), zeros that are allocated are
        /// ZeroAllocated. Without block status the whole disk is data.
        /// </summary>
        public override DiskExtent GetExtent(long offset, long maxLength)
        {
            maxLength = Math.Min(maxLength, Length - offset);
            var extent = new DiskExtent { Offset = offset, Length = maxLength, Type = ClusterType.Normal, HostOffset = -1 };
            if (maxLength <= 0 || !_client.HasContext(NbdProtocol.ContextBaseAllocation)) return extent;
            NbdExtent allocation;
            NbdExtent? depth;
            lock (_statusGate)
            {
                if (_allocation == null || offset < _statusStart || offset >= _statusEnd) FetchStatus(offset);
                if (offset >= _statusEnd)
                    throw new NbdException(NbdFailure.ProtocolViolation, Path, $"NBD server '{Path}' broke the protocol: its block status from {_statusStart} stops at {_statusEnd}, short of the block holding offset {offset}");
                allocation = Find(_allocation, offset);
                depth = _depth != null ? Find(_depth, offset) : (NbdExtent?)null;
            }
            long length = Math.Min(maxLength, allocation.End - offset);
            if (depth.HasValue) length = Math.Min(length, depth.Value.End - offset);
            extent.Length = length;
            bool hole = (allocation.Flags & NbdProtocol.StateHole) != 0;
            bool zero = (allocation.Flags & NbdProtocol.StateZero) != 0;
            if (zero) extent.Type = hole ? (depth.HasValue && depth.Value.Flags != 0 ? ClusterType.Zero : ClusterType.Unallocated) : ClusterType.ZeroAllocated;
            // A hole that does not read as zeros has unspecified contents: it is read like data.
            return extent;
        }

        private void FetchStatus(long offset)
        {
            offset = AlignDown(offset);  // servers may refuse a request that does not start on a block
            int length = (int)Math.Min(StatusWindow, Length - offset);
            var status = _client.BlockStatus(offset, length);
            if (!status.TryGetValue(NbdProtocol.ContextBaseAllocation, out var allocation))
                throw new NbdException(NbdFailure.ProtocolViolation, Path, $"NBD server '{Path}' sent no base:allocation status at offset {offset}");
            status.TryGetValue(NbdProtocol.ContextQemuAllocationDepth, out var depth);
            long end = allocation[allocation.Count - 1].End;
            if (depth != null) end = Math.Min(end, depth[depth.Count - 1].End);
            _allocation = allocation;
            _depth = depth;
            _statusStart = offset;
            _statusEnd = end;
        }

        private static NbdExtent Find(List<NbdExtent> extents, long offset)
        {
            int lo = 0, hi = extents.Count - 1;
            while (lo < hi)
            {
                int mid = (lo + hi + 1) / 2;
                if (extents[mid].Offset <= offset) lo = mid;
                else hi = mid - 1;
            }
            return extents[lo];
        }

        private void ForgetStatus()
        {
            lock (_statusGate) _allocation = _depth = null;
        }

        // ================================================================ dirty bitmaps

        /// <summary>The persistent bitmaps the export offers and the server agreed to show (qemu:dirty-bitmap:NAME contexts), by name.</summary>
        public IReadOnlyList<string> BitmapNames =>
            _client.Contexts.Where(c => c.StartsWith(NbdProtocol.ContextQemuDirtyBitmapPrefix, StringComparison.Ordinal) && c.Length > NbdProtocol.ContextQemuDirtyBitmapPrefix.Length)
                .Select(c => c.Substring(NbdProtocol.ContextQemuDirtyBitmapPrefix.Length)).OrderBy(n => n, StringComparer.Ordinal).ToList();

        /// <summary>
        /// The runs of qemu:dirty-bitmap:NAME from BLOCK_STATUS, a window at a time (the server may answer
        /// less than a window; each answer moves on by at least one byte), merged as they come, so memory
        /// stays that of one reply however many runs a hostile server sends. The context must have been
        /// asked for when connecting (OpenOptions.Bitmaps); otherwise the bitmap is not offered.
        /// </summary>
        public override IEnumerable<QcowBitmapExtent> GetDirtyExtents(string bitmap)
        {
            string context = NbdProtocol.ContextQemuDirtyBitmapPrefix + bitmap;
            if (!_client.HasContext(context))
                throw new QcowException(QcowErrorKind.BitmapNotFound, Path,
                    $"NBD export '{Path}' offers no bitmap '{bitmap}' (the server did not agree to the metadata context '{context}'; qemu-nbd exports one with -B {bitmap})");
            return DirtyRuns(context, bitmap);
        }

        private IEnumerable<QcowBitmapExtent> DirtyRuns(string context, string bitmap)
        {
            QcowBitmapExtent pending = null;
            long pos = 0;
            while (pos < Length)
            {
                long start = AlignDown(pos);
                int length = (int)Math.Min(StatusWindow, Length - start);
                var status = _client.BlockStatus(start, length);
                if (!status.TryGetValue(context, out var extents))
                    throw new NbdException(NbdFailure.ProtocolViolation, Path, $"NBD server '{Path}' sent no '{context}' status at offset {start}");
                long before = pos;
                foreach (var e in extents)
                {
                    if (e.End <= pos) continue;
                    long s = Math.Max(e.Offset, pos);
                    bool dirty = (e.Flags & NbdProtocol.StateDirty) != 0;
                    if (pending != null && pending.Dirty == dirty) pending.Length += e.End - s;
                    else
                    {
                        if (pending != null) yield return pending;
                        pending = new QcowBitmapExtent { Path = Path, Name = bitmap, Offset = s, Length = e.End - s, Dirty = dirty };
                    }
                    pos = e.End;
                }
                // A reply that stops short of where the last one ended (from an aligned-down start) would loop forever.
                if (pos == before)
                    throw new NbdException(NbdFailure.ProtocolViolation, Path, $"NBD server '{Path}' broke the protocol: its '{context}' status from {start} stops at or before {pos}, where the previous one ended");
            }
            if (pending != null) yield return pending;
        }

        // ================================================================ reads

        protected internal override void ReadStored(DiskExtent extent, long offset, byte[] buffer, int index, int count) =>
            Read(offset, buffer, index, count);

        /// <summary>Reads a range in pieces sent together; a range not aligned to the server's minimum block is read aligned and copied.</summary>
        public override void Read(long offset, byte[] buffer, int index, int count)
        {
            CheckRange(offset, count);
            if (count == 0) return;
            long alignedStart = AlignDown(offset), alignedEnd = Math.Min(Length, AlignUp(offset + count));
            if (alignedStart != offset || alignedEnd != offset + count)
            {
                var whole = new byte[alignedEnd - alignedStart];
                ReadAligned(alignedStart, whole, 0, whole.Length);
                Buffer.BlockCopy(whole, (int)(offset - alignedStart), buffer, index, count);
                return;
            }
            ReadAligned(offset, buffer, index, count);
        }

        private void ReadAligned(long offset, byte[] buffer, int index, int count)
        {
            int piece = (int)Math.Min(ReadPiece, _client.MaximumBlockSize);
            var requests = new List<(NbdClient, NbdClient.NbdRequest)>();
            try
            {
                for (int done = 0; done < count; done += piece)
                {
                    var client = NextClient();
                    requests.Add((client, client.BeginRead(offset + done, buffer, index + done, Math.Min(piece, count - done))));
                }
            }
            finally
            {
                // Every sent request is waited for, so no reply lands in a buffer its caller has moved on from.
                WaitAll(requests);
            }
        }

        private long AlignDown(long v) => v - v % _client.MinimumBlockSize;
        private long AlignUp(long v) => AlignDown(v + _client.MinimumBlockSize - 1);

        // ================================================================ writes

        public override void Write(long offset, byte[] buffer, int index, int count)
        {
            ThrowIfReadOnly();
            CheckRange(offset, count);
            if (count == 0) return;
            ForgetStatus();
            long alignedStart = AlignDown(offset), alignedEnd = Math.Min(Length, AlignUp(offset + count));
            if (alignedStart != offset || alignedEnd != offset + count)
            {
                // Read-modify-write of the blocks at the ends; one such write at a time.
                lock (_alignGate)
                {
                    var whole = new byte[alignedEnd - alignedStart];
                    ReadAligned(alignedStart, whole, 0, whole.Length);
                    Buffer.BlockCopy(buffer, index, whole, (int)(offset - alignedStart), count);
                    WriteAligned(alignedStart, whole, 0, whole.Length);
                }
                return;
            }
            WriteAligned(offset, buffer, index, count);
        }

        private void WriteAligned(long offset, byte[] buffer, int index, int count)
        {
            int piece = (int)Math.Min(ReadPiece, _client.MaximumBlockSize);
            var requests = new List<(NbdClient, NbdClient.NbdRequest)>();
            try
            {
                for (int done = 0; done < count; done += piece)
                {
                    var client = NextClient();
                    requests.Add((client, client.BeginWrite(offset + done, buffer, index + done, Math.Min(piece, count - done))));
                }
            }
            finally
            {
                WaitAll(requests);
            }
        }

        private static void WaitAll(List<(NbdClient Client, NbdClient.NbdRequest Request)> requests)
        {
            Exception first = null;
            foreach (var r in requests)
            {
                try { r.Client.Wait(r.Request); }
                catch (Exception e) when (first == null) { first = e; }
            }
            if (first != null) throw first;
        }

        /// <summary>WRITE_ZEROES where the server has it (the aligned middle); zeros written as data elsewhere.</summary>
        public override void WriteZeroes(long offset, long length)
        {
            ThrowIfReadOnly();
            CheckRange(offset, length);
            if (length == 0) return;
            ForgetStatus();
            long start = AlignUp(offset), end = Math.Max(start, AlignDown(offset + length));
            if (offset + length == Length) end = Length;  // the export's last block may be short
            if (!_client.CanWriteZeroes || start >= end)
            {
                WriteZeroData(offset, length);
                return;
            }
            if (start > offset) WriteZeroData(offset, start - offset);
            // One command's length is 32 bits: pieces of a power of two, so every piece stays aligned.
            var requests = new List<(NbdClient, NbdClient.NbdRequest)>();
            try
            {
                for (long pos = start; pos < end; pos += StatusWindow)
                {
                    var client = NextClient();
                    requests.Add((client, client.BeginWriteZeroes(pos, (int)Math.Min(StatusWindow, end - pos))));
                }
            }
            finally
            {
                WaitAll(requests);
            }
            if (end < offset + length) WriteZeroData(end, offset + length - end);
        }

        private void WriteZeroData(long offset, long length)
        {
            var zeros = new byte[(int)Math.Min(length, ZeroBufferLength)];
            for (long done = 0; done < length;)
            {
                int n = (int)Math.Min(zeros.Length, length - done);
                Write(offset + done, zeros, 0, n);
                done += n;
            }
        }

        /// <summary>TRIM of the aligned part, when the server takes it; otherwise nothing (a discard may be ignored).</summary>
        public override void Discard(long offset, long length)
        {
            ThrowIfReadOnly();
            CheckRange(offset, length);
            if (!_client.CanTrim) return;
            long start = AlignUp(offset), end = AlignDown(offset + length);
            if (offset + length == Length) end = Length;
            if (start >= end) return;
            ForgetStatus();
            var requests = new List<(NbdClient, NbdClient.NbdRequest)>();
            try
            {
                for (long pos = start; pos < end; pos += StatusWindow)
                {
                    var client = NextClient();
                    requests.Add((client, client.BeginTrim(pos, (int)Math.Min(StatusWindow, end - pos))));
                }
            }
            finally
            {
                WaitAll(requests);
            }
        }

        /// <summary>Flushes every connection (multi-conn promises one flush covers all; each is flushed anyway, as nbdcopy does).</summary>
        public override void Flush()
        {
            if (!_writable || !_client.CanFlush) return;
            foreach (var client in _clients) client.Flush();
        }

        private void ThrowIfReadOnly()
        {
            if (!_writable) throw new QcowException(QcowErrorKind.ReadOnly, Path, $"'{Path}' is open read-only");
        }

        protected override void Dispose(bool disposing)
        {
            foreach (var client in _clients) client.Dispose();
        }
    }
}
