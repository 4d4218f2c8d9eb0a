using System;
using System.Collections.Generic;
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

        private readonly NbdClient _client;
        private readonly bool _writable;
        private readonly object _statusGate = new object();
        private readonly object _alignGate = new object();
        private long _statusStart, _statusEnd;
        private List<NbdExtent> _allocation, _depth;

        private NbdDisk(NbdClient client, bool writable)
        {
            _client = client;
            _writable = writable;
        }

        /// <summary>Connects to the export a URI names; a writable open of a read-only export is refused.</summary>
        public static NbdDisk Open(NbdUri uri, bool writable, NbdClientOptions options = null)
        {
            options = options ?? new NbdClientOptions();
            var client = NbdClient.Connect(uri, options);
            if (writable && client.ReadOnly)
            {
                client.Dispose();
                throw new QcowException(QcowErrorKind.ReadOnly, uri.Text, $"NBD export '{uri.Text}' is read-only");
            }
            return new NbdDisk(client, writable);
        }

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
            var requests = new List<NbdClient.NbdRequest>();
            try
            {
                for (int done = 0; done < count; done += piece)
                    requests.Add(_client.BeginRead(offset + done, buffer, index + done, Math.Min(piece, count - done)));
            }
            finally
            {
                // Every sent request is waited for, so no reply lands in a buffer its caller has moved on from.
                Exception first = null;
                foreach (var r in requests)
                {
                    try { _client.Wait(r); }
                    catch (Exception e) when (first == null) { first = e; }
                }
                if (first != null) throw first;
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
            var requests = new List<NbdClient.NbdRequest>();
            try
            {
                for (int done = 0; done < count; done += piece)
                    requests.Add(_client.BeginWrite(offset + done, buffer, index + done, Math.Min(piece, count - done)));
            }
            finally
            {
                WaitAll(requests);
            }
        }

        private void WaitAll(List<NbdClient.NbdRequest> requests)
        {
            Exception first = null;
            foreach (var r in requests)
            {
                try { _client.Wait(r); }
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
            var requests = new List<NbdClient.NbdRequest>();
            try
            {
                for (long pos = start; pos < end; pos += StatusWindow)
                    requests.Add(_client.BeginWriteZeroes(pos, (int)Math.Min(StatusWindow, end - pos)));
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
            var requests = new List<NbdClient.NbdRequest>();
            try
            {
                for (long pos = start; pos < end; pos += StatusWindow)
                    requests.Add(_client.BeginTrim(pos, (int)Math.Min(StatusWindow, end - pos)));
            }
            finally
            {
                WaitAll(requests);
            }
        }

        public override void Flush()
        {
            if (_writable && _client.CanFlush) _client.Flush();
        }

        private void ThrowIfReadOnly()
        {
            if (!_writable) throw new QcowException(QcowErrorKind.ReadOnly, Path, $"'{Path}' is open read-only");
        }

        protected override void Dispose(bool disposing) => _client.Dispose();
    }
}
