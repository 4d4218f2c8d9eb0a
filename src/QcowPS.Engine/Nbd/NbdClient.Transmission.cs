using System;
using System.Collections.Generic;
using System.IO;
using System.Threading;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Nbd
{
    /// <summary>
    /// Transmission: requests sent under one lock, replies read by one thread and matched by cookie. A
    /// caller sends (Begin...) then waits (Wait), so several requests of one caller, and of many
    /// callers, are in flight together; at most MaxInFlight at once.
    /// </summary>
    public sealed partial class NbdClient
    {
        /// <summary>One request waiting for its reply: what was asked, where read data goes, what came back.</summary>
        public sealed class NbdRequest
        {
            internal ulong Cookie;
            internal ushort Command;
            internal long Offset;
            internal int Length;
            internal byte[] Buffer;
            internal int Index;
            internal readonly ManualResetEventSlim Done = new ManualResetEventSlim(false);
            internal uint Error;
            internal string ErrorMessage;
            internal NbdException Failure;
            /// <summary>Read chunks received so far, by start, to refuse overlaps and find gaps (structured reads).</summary>
            internal SortedList<long, long> Covered;
            internal Dictionary<string, List<NbdExtent>> Status;
        }

        private void StartTransmission()
        {
            // Waits are timed per request from here; the reader thread blocks until data or close.
            _socket.ReceiveTimeout = 0;
            _inFlight = new SemaphoreSlim(Math.Max(1, _options.MaxInFlight));
            _reader = new Thread(ReadReplies) { IsBackground = true, Name = "QcowPS NBD reply reader" };
            _reader.Start();
        }

        // ================================================================ requests

        public NbdRequest BeginRead(long offset, byte[] buffer, int index, int count)
        {
            var request = new NbdRequest { Command = NbdProtocol.CmdRead, Offset = offset, Length = count, Buffer = buffer, Index = index };
            if (StructuredReplies) request.Covered = new SortedList<long, long>();
            Send(request, 0, null, 0, 0);
            return request;
        }

        public NbdRequest BeginWrite(long offset, byte[] buffer, int index, int count)
        {
            var request = new NbdRequest { Command = NbdProtocol.CmdWrite, Offset = offset, Length = count };
            Send(request, 0, buffer, index, count);
            return request;
        }

        public NbdRequest BeginWriteZeroes(long offset, int count)
        {
            var request = new NbdRequest { Command = NbdProtocol.CmdWriteZeroes, Offset = offset, Length = count };
            Send(request, 0, null, 0, 0);
            return request;
        }

        public NbdRequest BeginTrim(long offset, int count)
        {
            var request = new NbdRequest { Command = NbdProtocol.CmdTrim, Offset = offset, Length = count };
            Send(request, 0, null, 0, 0);
            return request;
        }

        public void Flush() => Wait(Send(new NbdRequest { Command = NbdProtocol.CmdFlush }, 0, null, 0, 0));

        /// <summary>Block status of [offset, offset+length) in every negotiated context, by context name.</summary>
        public Dictionary<string, List<NbdExtent>> BlockStatus(long offset, int length)
        {
            if (_contextIds.Count == 0) throw new InvalidOperationException("No metadata context was negotiated");
            var request = new NbdRequest { Command = NbdProtocol.CmdBlockStatus, Offset = offset, Length = length, Status = new Dictionary<string, List<NbdExtent>>() };
            Wait(Send(request, 0, null, 0, 0));
            return request.Status;
        }

        public void Read(long offset, byte[] buffer, int index, int count) => Wait(BeginRead(offset, buffer, index, count));

        private NbdRequest Send(NbdRequest request, ushort flags, byte[] payload, int index, int count)
        {
            ThrowIfBroken();
            if (!_inFlight.Wait(_options.Timeout))
                throw Fail(new NbdException(NbdFailure.Timeout, Server, $"NBD server '{Server}' answered none of {_options.MaxInFlight} requests within {_options.Timeout.TotalSeconds:0.###} s"));
            request.Cookie = (ulong)Interlocked.Increment(ref _nextCookie);
            lock (_pendingGate) _pending[request.Cookie] = request;
            var header = new byte[NbdProtocol.RequestHeaderLength];
            BigEndian.Put32(header, NbdProtocol.RequestMagicOffset, NbdProtocol.RequestMagic);
            BigEndian.Put16(header, NbdProtocol.RequestFlagsOffset, flags);
            BigEndian.Put16(header, NbdProtocol.RequestTypeOffset, request.Command);
            BigEndian.Put64(header, NbdProtocol.RequestCookieOffset, request.Cookie);
            BigEndian.Put64(header, NbdProtocol.RequestOffsetOffset, (ulong)request.Offset);
            BigEndian.Put32(header, NbdProtocol.RequestLengthOffset, (uint)request.Length);
            try
            {
                lock (_sendGate)
                {
                    ThrowIfBroken();
                    _stream.Write(header, 0, header.Length);
                    if (count > 0) _stream.Write(payload, index, count);
                    _stream.Flush();
                }
            }
            catch (Exception e) when (e is IOException || e is ObjectDisposedException || e is System.Net.Sockets.SocketException)
            {
                throw Fail(Translate(e, "while a request was sent"));
            }
            return request;
        }

        /// <summary>Waits for a request's reply: a server error, a broken connection or the timeout throws.</summary>
        public void Wait(NbdRequest request)
        {
            if (!request.Done.Wait(_options.Timeout))
            {
                // A stalled server: nothing can be trusted to arrive in order after this, so the connection goes.
                throw Fail(new NbdException(NbdFailure.Timeout, Server,
                    $"NBD server '{Server}' did not answer {CommandName(request.Command)} at offset {request.Offset} within {_options.Timeout.TotalSeconds:0.###} s"));
            }
            request.Done.Dispose();
            if (request.Failure != null) throw request.Failure.Again();
            if (request.Error != 0)
                throw new NbdException(NbdFailure.ServerError, Server,
                    $"NBD server '{Server}' failed {CommandName(request.Command)} of {request.Length} bytes at offset {request.Offset}: {NbdErrors.Name(request.Error)}{(string.IsNullOrEmpty(request.ErrorMessage) ? "" : " (" + request.ErrorMessage + ")")}",
                    request.Error);
        }

        private static string CommandName(ushort command)
        {
            switch (command)
            {
                case NbdProtocol.CmdRead: return "READ";
                case NbdProtocol.CmdWrite: return "WRITE";
                case NbdProtocol.CmdFlush: return "FLUSH";
                case NbdProtocol.CmdTrim: return "TRIM";
                case NbdProtocol.CmdWriteZeroes: return "WRITE_ZEROES";
                case NbdProtocol.CmdBlockStatus: return "BLOCK_STATUS";
                default: return "command " + command;
            }
        }

        private void ThrowIfBroken()
        {
            if (_broken != null) throw _broken.Again();
            if (_disposed) throw new ObjectDisposedException(nameof(NbdClient), $"The connection to '{Server}' is closed");
        }

        /// <summary>Ends the connection for good: every waiting request fails with the cause, and so does every later one.</summary>
        private NbdException Fail(NbdException cause)
        {
            List<NbdRequest> waiting;
            lock (_pendingGate)
            {
                if (_broken == null) _broken = cause;
                waiting = new List<NbdRequest>(_pending.Values);
                _pending.Clear();
            }
            foreach (var request in waiting) Complete(request, _broken);
            try { _socket?.Dispose(); } catch (ObjectDisposedException) { }
            return _broken.Again();
        }

        private void Complete(NbdRequest request, NbdException failure = null)
        {
            if (failure != null && request.Failure == null) request.Failure = failure;
            try { request.Done.Set(); } catch (ObjectDisposedException) { }
            _inFlight.Release();
        }

        // ================================================================ replies (reader thread)

        private void ReadReplies()
        {
            var magic = new byte[4];
            try
            {
                while (true)
                {
                    ReadExactly(magic, 0, 4);
                    uint m = BigEndian.U32(magic, 0);
                    if (m == NbdProtocol.SimpleReplyMagic) ReadSimpleReply();
                    else if (m == NbdProtocol.StructuredReplyMagic && StructuredReplies) ReadStructuredChunk();
                    else throw Violation($"a reply has magic 0x{m:X8}");
                }
            }
            catch (NbdException e)
            {
                Fail(e);
            }
            catch (Exception e) when (e is IOException || e is ObjectDisposedException || e is System.Net.Sockets.SocketException || e is InvalidOperationException)
            {
                Fail(_disposed
                    ? new NbdException(NbdFailure.ConnectionFailed, Server, $"The connection to '{Server}' is closed")
                    : Translate(e, "while replies were read"));
            }
        }

        private NbdRequest Take(ulong cookie, bool last)
        {
            lock (_pendingGate)
            {
                if (!_pending.TryGetValue(cookie, out var request))
                    throw Violation($"it replied with cookie {cookie}, which names no request in flight");
                if (last) _pending.Remove(cookie);
                return request;
            }
        }

        private void ReadSimpleReply()
        {
            var rest = ReadBytes(NbdProtocol.SimpleReplyHeaderLength - 4);
            uint error = BigEndian.U32(rest, NbdProtocol.SimpleReplyErrorOffset - 4);
            ulong cookie = BigEndian.U64(rest, NbdProtocol.SimpleReplyCookieOffset - 4);
            var request = Take(cookie, true);
            if (request.Command == NbdProtocol.CmdBlockStatus && error == 0)
                throw Violation("it answered BLOCK_STATUS with a simple reply that carries no status");
            request.Error = error;
            if (request.Command == NbdProtocol.CmdRead && error == 0)
            {
                // A simple read reply is the data, all of it: nothing says how long it is, so it is what we asked.
                ReadExactly(request.Buffer, request.Index, request.Length);
                Interlocked.Add(ref _bytesReceived, request.Length);
            }
            Complete(request);
        }

        private void ReadStructuredChunk()
        {
            var rest = ReadBytes(NbdProtocol.StructuredReplyHeaderLength - 4);
            ushort flags = BigEndian.U16(rest, NbdProtocol.StructuredReplyFlagsOffset - 4);
            ushort type = BigEndian.U16(rest, NbdProtocol.StructuredReplyTypeOffset - 4);
            ulong cookie = BigEndian.U64(rest, NbdProtocol.StructuredReplyCookieOffset - 4);
            uint length = BigEndian.U32(rest, NbdProtocol.StructuredReplyLengthOffset - 4);
            bool done = (flags & NbdProtocol.ReplyFlagDone) != 0;
            var request = Take(cookie, done);
            switch (type)
            {
                case NbdProtocol.ReplyTypeNone:
                    if (!done) throw Violation("a NONE chunk without the DONE flag");
                    if (length != 0) throw Violation($"a NONE chunk of {length} bytes");
                    break;
                case NbdProtocol.ReplyTypeOffsetData:
                    ReadOffsetData(request, length);
                    break;
                case NbdProtocol.ReplyTypeOffsetHole:
                    ReadOffsetHole(request, length);
                    break;
                case NbdProtocol.ReplyTypeBlockStatus:
                    ReadBlockStatus(request, length);
                    break;
                default:
                    if ((type & NbdProtocol.ReplyTypeErrorBit) == 0) throw Violation($"a reply chunk of unknown type {type}");
                    ReadErrorChunk(request, type, length);
                    break;
            }
            if (done) FinishStructured(request);
        }

        private void FinishStructured(NbdRequest request)
        {
            if (request.Error == 0)
            {
                if (request.Command == NbdProtocol.CmdRead)
                {
                    long covered = 0;
                    foreach (var run in request.Covered) covered += run.Value - run.Key;
                    if (covered != request.Length)
                        throw Violation($"its reply to READ of {request.Length} bytes at offset {request.Offset} covers {covered} of them");
                }
                else if (request.Command == NbdProtocol.CmdBlockStatus && !request.Status.ContainsKey(NbdProtocol.ContextBaseAllocation) && _contextIds.ContainsKey(NbdProtocol.ContextBaseAllocation))
                    throw Violation($"its reply to BLOCK_STATUS at offset {request.Offset} has no base:allocation extents");
            }
            Complete(request);
        }

        private void ExpectCommand(NbdRequest request, ushort command, string chunk)
        {
            if (request.Command != command) throw Violation($"it answered {CommandName(request.Command)} with a {chunk} chunk");
        }

        /// <summary>Marks [start, end) of a read as answered, refusing a chunk outside the request or over another chunk.</summary>
        private void Cover(NbdRequest request, long start, long length, string chunk)
        {
            long end = start + length;
            if (start < request.Offset || length < 0 || end > request.Offset + request.Length || end < start)
                throw Violation($"a {chunk} chunk [{start}, +{length}) lies outside the READ of {request.Length} bytes at offset {request.Offset}");
            var covered = request.Covered;
            int count = covered.Count;
            // Chunks arrive in any order; the list is sorted by start, so only the neighbours can overlap.
            int lo = 0, hi = count - 1, before = -1;
            while (lo <= hi)
            {
                int mid = (lo + hi) / 2;
                if (covered.Keys[mid] <= start) { before = mid; lo = mid + 1; }
                else hi = mid - 1;
            }
            if (before >= 0 && covered.Values[before] > start || before + 1 < count && covered.Keys[before + 1] < end)
                throw Violation($"a {chunk} chunk [{start}, +{length}) overlaps another chunk of the same READ");
            covered.Add(start, end);
        }

        private void ReadOffsetData(NbdRequest request, uint length)
        {
            ExpectCommand(request, NbdProtocol.CmdRead, "OFFSET_DATA");
            if (length <= NbdProtocol.OffsetDataHeaderLength) throw Violation($"an OFFSET_DATA chunk of {length} bytes carries no data");
            long dataLength = length - NbdProtocol.OffsetDataHeaderLength;
            if (dataLength > request.Length)
                throw Violation($"an OFFSET_DATA chunk carries {dataLength} bytes for a READ of {request.Length}");
            long offset = (long)BigEndian.U64(ReadBytes(NbdProtocol.OffsetDataHeaderLength), 0);
            Cover(request, offset, dataLength, "OFFSET_DATA");
            ReadExactly(request.Buffer, request.Index + (int)(offset - request.Offset), (int)dataLength);
            Interlocked.Add(ref _bytesReceived, dataLength);
        }

        private void ReadOffsetHole(NbdRequest request, uint length)
        {
            ExpectCommand(request, NbdProtocol.CmdRead, "OFFSET_HOLE");
            if (length != NbdProtocol.OffsetHoleLength) throw Violation($"an OFFSET_HOLE chunk of {length} bytes, not {NbdProtocol.OffsetHoleLength}");
            var payload = ReadBytes(NbdProtocol.OffsetHoleLength);
            long offset = (long)BigEndian.U64(payload, 0);
            uint size = BigEndian.U32(payload, NbdProtocol.OffsetHoleSizeOffset);
            if (size == 0) throw Violation("an OFFSET_HOLE chunk of 0 bytes");
            Cover(request, offset, size, "OFFSET_HOLE");
            Array.Clear(request.Buffer, request.Index + (int)(offset - request.Offset), (int)size);
        }

        private void ReadBlockStatus(NbdRequest request, uint length)
        {
            ExpectCommand(request, NbdProtocol.CmdBlockStatus, "BLOCK_STATUS");
            if (length < NbdProtocol.BlockStatusHeaderLength + NbdProtocol.BlockStatusDescriptorLength || length > MaxBlockStatusPayload
                || (length - NbdProtocol.BlockStatusHeaderLength) % NbdProtocol.BlockStatusDescriptorLength != 0)
                throw Violation($"a BLOCK_STATUS chunk of {length} bytes (a context id, then 1 to {NbdProtocol.MaxBlockStatusExtents} descriptors of 8 bytes)");
            var payload = ReadBytes((int)length);
            uint id = BigEndian.U32(payload, 0);
            if (!_contextNames.TryGetValue(id, out string context)) throw Violation($"a BLOCK_STATUS chunk for context id {id}, which was not negotiated");
            if (request.Status.ContainsKey(context)) throw Violation($"two BLOCK_STATUS chunks for context '{context}' in one reply");
            var extents = new List<NbdExtent>();
            long pos = request.Offset, end = request.Offset + request.Length;
            for (int at = NbdProtocol.BlockStatusHeaderLength; at < payload.Length; at += NbdProtocol.BlockStatusDescriptorLength)
            {
                uint extentLength = BigEndian.U32(payload, at);
                uint flags = BigEndian.U32(payload, at + 4);
                if (extentLength == 0) throw Violation($"a BLOCK_STATUS extent of 0 bytes at offset {pos} ('{context}' does not advance)");
                if (pos >= end) throw Violation($"BLOCK_STATUS extents for '{context}' go on past the {request.Length} bytes asked at offset {request.Offset}");
                // The last extent may reach past the request (the spec allows it); we keep only what was asked.
                long take = Math.Min(extentLength, end - pos);
                extents.Add(new NbdExtent { Offset = pos, Length = take, Flags = flags });
                pos += take;
            }
            request.Status[context] = extents;
        }

        private void ReadErrorChunk(NbdRequest request, ushort type, uint length)
        {
            if (length < NbdProtocol.ErrorChunkHeaderLength || length > MaxErrorChunkPayload)
                throw Violation($"an error chunk of {length} bytes");
            var payload = ReadBytes((int)length);
            uint error = BigEndian.U32(payload, 0);
            int messageLength = BigEndian.U16(payload, NbdProtocol.ErrorChunkMessageLengthOffset);
            int expected = NbdProtocol.ErrorChunkHeaderLength + messageLength + (type == NbdProtocol.ReplyTypeErrorOffset ? NbdProtocol.ErrorOffsetFieldLength : 0);
            if (type == NbdProtocol.ReplyTypeError || type == NbdProtocol.ReplyTypeErrorOffset)
            {
                if (expected != length) throw Violation($"an error chunk of {length} bytes whose message takes {messageLength}");
            }
            else if (messageLength + NbdProtocol.ErrorChunkHeaderLength > length) throw Violation($"an error chunk of {length} bytes whose message takes {messageLength}");
            if (error == 0) throw Violation("an error chunk with error 0");
            if (request.Error == 0)
            {
                request.Error = error;
                request.ErrorMessage = Printable(payload, NbdProtocol.ErrorChunkHeaderLength, messageLength);
                if (type == NbdProtocol.ReplyTypeErrorOffset)
                    request.ErrorMessage = $"at offset {(long)BigEndian.U64(payload, NbdProtocol.ErrorChunkHeaderLength + messageLength)}" +
                        (request.ErrorMessage.Length > 0 ? ": " + request.ErrorMessage : "");
            }
        }

        // ================================================================ close

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            if (_reader != null && _broken == null)
            {
                // A polite goodbye (NBD_CMD_DISC has no reply); a server that is gone is not waited for.
                try
                {
                    var header = new byte[NbdProtocol.RequestHeaderLength];
                    BigEndian.Put32(header, NbdProtocol.RequestMagicOffset, NbdProtocol.RequestMagic);
                    BigEndian.Put16(header, NbdProtocol.RequestTypeOffset, NbdProtocol.CmdDisc);
                    lock (_sendGate)
                    {
                        _stream.Write(header, 0, header.Length);
                        _stream.Flush();
                    }
                }
                catch (Exception e) when (e is IOException || e is ObjectDisposedException || e is System.Net.Sockets.SocketException) { }
            }
            try { _socket?.Shutdown(System.Net.Sockets.SocketShutdown.Both); } catch (Exception e) when (e is System.Net.Sockets.SocketException || e is ObjectDisposedException) { }
            try { _stream?.Dispose(); } catch (Exception e) when (e is IOException || e is ObjectDisposedException) { }
            try { _socket?.Dispose(); } catch (ObjectDisposedException) { }
            _reader?.Join(TimeSpan.FromSeconds(5));
        }
    }
}
