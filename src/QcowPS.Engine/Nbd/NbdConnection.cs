using System;
using System.Buffers;
using System.Collections.Generic;
using System.IO;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Text;
using System.Threading;
using QcowPS.Engine.IO;
using P = QcowPS.Engine.Nbd.NbdProtocol;

namespace QcowPS.Engine.Nbd
{
    /// <summary>
    /// One client of an NbdServer: the fixed newstyle handshake, then transmission. One thread reads
    /// requests; reads and block status run on the thread pool in parallel and reply in any order;
    /// writes, zeroing, trims and flushes are applied on the reading thread, in the order they came.
    /// The requests and bytes in flight are bounded, so a client that sends faster than it reads
    /// replies is simply not read from.
    /// </summary>
    internal sealed class NbdConnection
    {
        /// <summary>A client that has not read a reply for this long is dropped (it must not pin threads forever).</summary>
        private const int SendTimeoutMilliseconds = 120_000;
        /// <summary>Oversized option payloads up to this size are read and refused; beyond it the session ends.</summary>
        private const int MaxSkippedOptionLength = 16 << 20;

        private readonly NbdServer _server;
        private readonly Socket _socket;
        private readonly NbdServerOptions _options;
        private Stream _stream;
        private readonly object _sendLock = new object();
        private readonly object _flightLock = new object();
        private int _requestsInFlight;
        private long _bytesInFlight;

        private bool _tls;
        private bool _clientNoZeroes;
        private bool _structured;
        private List<string> _contexts = new List<string>();
        private string _contextsExport;
        private NbdExport _export;

        public NbdConnection(NbdServer server, Socket socket, NbdServerOptions options)
        {
            _server = server;
            _socket = socket;
            _options = options;
        }

        /// <summary>Ends the session as a server shutdown does: no more requests are read; those in flight are answered.</summary>
        public void Shutdown()
        {
            try { _socket.Shutdown(SocketShutdown.Receive); } catch (SocketException) { } catch (ObjectDisposedException) { }
        }

        /// <summary>
        /// Ends the session at once, whatever it is doing: closing the socket fails a send blocked on a
        /// client that stopped reading, so the threads serving it end. For a stop whose drain ran out of time.
        /// </summary>
        public void Abort()
        {
            try { _socket.Close(0); } catch (SocketException) { } catch (ObjectDisposedException) { }
        }

        public void Run()
        {
            try
            {
                if (_socket.AddressFamily != AddressFamily.Unix) _socket.NoDelay = true;
                _socket.SendTimeout = SendTimeoutMilliseconds;
                _socket.ReceiveTimeout = _options.HandshakeTimeoutMilliseconds;
                _stream = new NetworkStream(_socket, false);
                if (!Negotiate()) return;
                _socket.ReceiveTimeout = 0;
                Transmit();
            }
            catch (Exception e) when (e is IOException || e is SocketException || e is ObjectDisposedException ||
                                      e is NbdProtocolViolation || e is AuthenticationException)
            {
                _server.Report($"connection dropped: {e.Message}");
            }
            catch (Exception e) when (!(e is OutOfMemoryException))
            {
                // Whatever goes wrong with one client must not end the process that serves the others.
                _server.Report($"connection ended by an internal error: {e}");
            }
            finally
            {
                WaitForRequestsInFlight();
                try { _stream?.Dispose(); } catch (IOException) { }
                try { _socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
                _socket.Dispose();
            }
        }

        // ================================================================ handshake

        /// <summary>Option haggling; true when the client entered transmission with an export.</summary>
        private bool Negotiate()
        {
            var greeting = new byte[P.GreetingLength];
            BigEndian.Put64(greeting, P.GreetingInitialMagicOffset, P.InitialMagic);
            BigEndian.Put64(greeting, P.GreetingOptionMagicOffset, P.OptionMagic);
            BigEndian.Put16(greeting, P.GreetingHandshakeFlagsOffset, (ushort)(P.FlagFixedNewstyle | P.FlagNoZeroes));
            Send(greeting, 0, greeting.Length, null, 0, 0);

            var clientFlags = new byte[P.ClientFlagsLength];
            if (!ReadFull(clientFlags, 0, clientFlags.Length)) return false;
            uint flags = BigEndian.U32(clientFlags, 0);
            // The spec: a server MUST close the connection on client flags it does not know.
            if ((flags & ~(P.FlagClientFixedNewstyle | P.FlagClientNoZeroes)) != 0)
                throw new NbdProtocolViolation($"unknown client flags 0x{flags:X}");
            _clientNoZeroes = (flags & P.FlagClientNoZeroes) != 0;

            var header = new byte[P.OptionHeaderLength];
            while (true)
            {
                if (!ReadFull(header, 0, header.Length)) return false;
                if (BigEndian.U64(header, P.OptionMagicOffset) != P.OptionMagic)
                    throw new NbdProtocolViolation("bad option magic");
                uint option = BigEndian.U32(header, P.OptionCodeOffset);
                uint length = BigEndian.U32(header, P.OptionLengthOffset);
                if (length > _options.MaxOptionLength)
                {
                    if (length > MaxSkippedOptionLength || option == P.OptExportName)
                        throw new NbdProtocolViolation($"option {option} of {length} bytes is too long");
                    Skip(length);
                    OptionReply(option, P.RepErrTooBig, $"option payload of {length} bytes exceeds the server's limit of {_options.MaxOptionLength}");
                    continue;
                }
                var data = new byte[length];
                if (!ReadFull(data, 0, data.Length)) return false;
                if (_server.IsStopping && option != P.OptAbort)
                {
                    if (option == P.OptExportName) return false;
                    OptionReply(option, P.RepErrShutdown, "the server is shutting down");
                    continue;
                }

                if (_options.Certificate != null && !_tls && option != P.OptStartTls)
                {
                    // FORCEDTLS: nothing but STARTTLS (and ABORT) before the upgrade.
                    if (option == P.OptExportName) return false;
                    if (option == P.OptAbort) { OptionReply(option, P.RepAck); return false; }
                    OptionReply(option, P.RepErrTlsReqd, "TLS is required: send NBD_OPT_STARTTLS first");
                    continue;
                }

                switch (option)
                {
                    case P.OptExportName:
                        return ExportName(data);
                    case P.OptAbort:
                        OptionReply(option, P.RepAck);
                        return false;
                    case P.OptList:
                        if (length != 0) { OptionReply(option, P.RepErrInvalid, "NBD_OPT_LIST takes no data"); break; }
                        foreach (var export in _server.Exports)
                        {
                            var name = Encoding.UTF8.GetBytes(export.Name);
                            var reply = new byte[4 + name.Length];
                            BigEndian.Put32(reply, 0, (uint)name.Length);
                            Buffer.BlockCopy(name, 0, reply, 4, name.Length);
                            OptionReply(option, P.RepServer, reply);
                        }
                        OptionReply(option, P.RepAck);
                        break;
                    case P.OptStartTls:
                        StartTls(length);
                        break;
                    case P.OptInfo:
                    case P.OptGo:
                        if (InfoOrGo(option, data)) return true;
                        break;
                    case P.OptStructuredReply:
                        if (length != 0) OptionReply(option, P.RepErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data");
                        else if (_structured) OptionReply(option, P.RepErrInvalid, "structured replies are already negotiated");
                        else { _structured = true; OptionReply(option, P.RepAck); }
                        break;
                    case P.OptListMetaContext:
                    case P.OptSetMetaContext:
                        MetaContext(option, data);
                        break;
                    default:
                        OptionReply(option, P.RepErrUnsup, $"option {option} is not supported");
                        break;
                }
            }
        }

        private bool ExportName(byte[] data)
        {
            // A wrong name here cannot be answered with an error: the spec says the server closes.
            var export = _server.FindExport(Encoding.UTF8.GetString(data));
            if (export == null) return false;
            var reply = new byte[P.ExportNameReplyLength + (_clientNoZeroes ? 0 : P.ExportNameReplyZeroesLength)];
            BigEndian.Put64(reply, P.ExportNameReplySizeOffset, (ulong)export.Size);
            BigEndian.Put16(reply, P.ExportNameReplyFlagsOffset, export.TransmissionFlags(_structured, _server.MultiConnection));
            Send(reply, 0, reply.Length, null, 0, 0);
            Enter(export);
            return true;
        }

        private void StartTls(uint length)
        {
            if (length != 0) { OptionReply(P.OptStartTls, P.RepErrInvalid, "NBD_OPT_STARTTLS takes no data"); return; }
            if (_tls) { OptionReply(P.OptStartTls, P.RepErrInvalid, "TLS is already negotiated"); return; }
            if (_options.Certificate == null) { OptionReply(P.OptStartTls, P.RepErrPolicy, "this server has no certificate; TLS is not offered"); return; }
            OptionReply(P.OptStartTls, P.RepAck);
            // Every read so far took exactly the bytes of one option from the socket, so no plaintext
            // sent after STARTTLS is buffered here to be mistaken for protected data.
            var ssl = new SslStream(_stream, false);
            ssl.AuthenticateAsServer(_options.Certificate, false, SslProtocols.None, false);
            _stream = ssl;
            _tls = true;
            // State negotiated in plaintext is discarded (the spec's STARTTLS rules).
            _structured = false;
            _contexts = new List<string>();
            _contextsExport = null;
        }

        private bool InfoOrGo(uint option, byte[] data)
        {
            if (data.Length < 6) { OptionReply(option, P.RepErrInvalid, "option data too short"); return false; }
            uint nameLength = BigEndian.U32(data, 0);
            if (nameLength > data.Length - 6) { OptionReply(option, P.RepErrInvalid, "export name runs past the option data"); return false; }
            string name = Encoding.UTF8.GetString(data, 4, (int)nameLength);
            int count = BigEndian.U16(data, 4 + (int)nameLength);
            if (data.Length != 4 + nameLength + 2 + 2 * count) { OptionReply(option, P.RepErrInvalid, "the info request count does not match the option length"); return false; }
            var requested = new HashSet<ushort>();
            for (int i = 0; i < count; i++) requested.Add(BigEndian.U16(data, 6 + (int)nameLength + 2 * i));

            var export = _server.FindExport(name);
            if (export == null) { OptionReply(option, P.RepErrUnknown, $"no export named '{name}'"); return false; }

            var info = new byte[P.InfoExportLength];
            BigEndian.Put16(info, 0, P.InfoExport);
            BigEndian.Put64(info, P.InfoExportSizeOffset, (ulong)export.Size);
            BigEndian.Put16(info, P.InfoExportFlagsOffset, export.TransmissionFlags(_structured, _server.MultiConnection));
            OptionReply(option, P.RepInfo, info);
            if (requested.Contains(P.InfoName)) OptionReply(option, P.RepInfo, InfoString(P.InfoName, export.Name));
            if (requested.Contains(P.InfoDescription) && !string.IsNullOrEmpty(export.Description))
                OptionReply(option, P.RepInfo, InfoString(P.InfoDescription, export.Description));
            var sizes = new byte[P.InfoBlockSizeLength];
            BigEndian.Put16(sizes, 0, P.InfoBlockSize);
            BigEndian.Put32(sizes, P.InfoBlockSizeMinimumOffset, P.BlockSizeMinimum);
            BigEndian.Put32(sizes, P.InfoBlockSizePreferredOffset, P.BlockSizePreferred);
            BigEndian.Put32(sizes, P.InfoBlockSizeMaximumOffset, P.BlockSizeMaximum);
            OptionReply(option, P.RepInfo, sizes);
            OptionReply(option, P.RepAck);
            if (option != P.OptGo) return false;
            Enter(export);
            return true;
        }

        private static byte[] InfoString(ushort type, string text)
        {
            var bytes = Encoding.UTF8.GetBytes(text);
            var info = new byte[P.InfoTypeLength + bytes.Length];
            BigEndian.Put16(info, 0, type);
            Buffer.BlockCopy(bytes, 0, info, P.InfoTypeLength, bytes.Length);
            return info;
        }

        private void Enter(NbdExport export)
        {
            _export = export;
            // Contexts were chosen for one export; they mean nothing for another.
            if (_contextsExport != export.Name) _contexts = new List<string>();
        }

        private void MetaContext(uint option, byte[] data)
        {
            bool listing = option == P.OptListMetaContext;
            if (!_structured) { OptionReply(option, P.RepErrInvalid, "negotiate structured replies first"); return; }
            if (data.Length < 8) { OptionReply(option, P.RepErrInvalid, "option data too short"); return; }
            uint nameLength = BigEndian.U32(data, 0);
            if (nameLength > data.Length - 8) { OptionReply(option, P.RepErrInvalid, "export name runs past the option data"); return; }
            string name = Encoding.UTF8.GetString(data, 4, (int)nameLength);
            int pos = 4 + (int)nameLength;
            uint queryCount = BigEndian.U32(data, pos);
            pos += 4;
            var queries = new List<string>();
            for (uint i = 0; i < queryCount; i++)
            {
                if (data.Length - pos < 4) { OptionReply(option, P.RepErrInvalid, "query count runs past the option data"); return; }
                uint queryLength = BigEndian.U32(data, pos);
                pos += 4;
                if (queryLength > data.Length - pos) { OptionReply(option, P.RepErrInvalid, "query runs past the option data"); return; }
                if (queryLength > P.MaxStringLength) { OptionReply(option, P.RepErrTooBig, "query longer than 4096 bytes"); return; }
                queries.Add(Encoding.UTF8.GetString(data, pos, (int)queryLength));
                pos += (int)queryLength;
            }
            if (pos != data.Length) { OptionReply(option, P.RepErrInvalid, "trailing bytes after the queries"); return; }
            var export = _server.FindExport(name);
            if (export == null) { OptionReply(option, P.RepErrUnknown, $"no export named '{name}'"); return; }

            var selected = new List<string>();
            if (listing && queries.Count == 0) selected.AddRange(export.MetaContexts);
            foreach (var query in queries)
                foreach (var context in export.MatchMetaContexts(query, listing))
                    if (!selected.Contains(context)) selected.Add(context);
            for (int id = 0; id < selected.Count; id++)
            {
                var bytes = Encoding.UTF8.GetBytes(selected[id]);
                var reply = new byte[P.MetaContextIdLength + bytes.Length];
                BigEndian.Put32(reply, 0, listing ? 0u : (uint)id);
                Buffer.BlockCopy(bytes, 0, reply, P.MetaContextIdLength, bytes.Length);
                OptionReply(option, P.RepMetaContext, reply);
            }
            if (!listing)
            {
                _contexts = selected;
                _contextsExport = name;
            }
            OptionReply(option, P.RepAck);
        }

        private void OptionReply(uint option, uint type, string message) =>
            OptionReply(option, type, Encoding.UTF8.GetBytes(message));

        private void OptionReply(uint option, uint type, byte[] data = null)
        {
            var header = new byte[P.OptionReplyHeaderLength];
            BigEndian.Put64(header, P.OptionReplyMagicOffset, P.OptionReplyMagic);
            BigEndian.Put32(header, P.OptionReplyOptionOffset, option);
            BigEndian.Put32(header, P.OptionReplyTypeOffset, type);
            BigEndian.Put32(header, P.OptionReplyLengthOffset, (uint)(data?.Length ?? 0));
            Send(header, 0, header.Length, data, 0, data?.Length ?? 0);
        }

        // ================================================================ transmission

        private void Transmit()
        {
            var header = new byte[P.RequestHeaderLength];
            while (ReadFull(header, 0, header.Length))
            {
                if (BigEndian.U32(header, P.RequestMagicOffset) != P.RequestMagic)
                    throw new NbdProtocolViolation("bad request magic");
                var r = new Request
                {
                    Flags = BigEndian.U16(header, P.RequestFlagsOffset),
                    Type = BigEndian.U16(header, P.RequestTypeOffset),
                    Cookie = BigEndian.U64(header, P.RequestCookieOffset),
                    Offset = BigEndian.U64(header, P.RequestOffsetOffset),
                    Length = BigEndian.U32(header, P.RequestLengthOffset),
                };
                if (r.Type == P.CmdDisc) return;
                if (_server.IsStopping)
                {
                    if (r.Type == P.CmdWrite) Skip(r.Length);
                    ReplyError(r, P.ESHUTDOWN, "the server is shutting down");
                    continue;
                }
                Dispatch(r);
            }
        }

        private sealed class Request
        {
            public ushort Flags;
            public ushort Type;
            public ulong Cookie;
            public ulong Offset;
            public uint Length;
            public long End => (long)Offset + Length;
        }

        /// <summary>Command flags each command accepts (FUA is valid on every command).</summary>
        private ushort AllowedFlags(ushort type)
        {
            switch (type)
            {
                case P.CmdRead: return (ushort)(P.CmdFlagFua | (_structured ? P.CmdFlagDf : 0));
                case P.CmdWriteZeroes: return P.CmdFlagFua | P.CmdFlagNoHole | P.CmdFlagFastZero;
                case P.CmdBlockStatus: return P.CmdFlagFua | P.CmdFlagReqOne;
                default: return P.CmdFlagFua;
            }
        }

        private void Dispatch(Request r)
        {
            var export = _export;
            bool known = r.Type <= P.CmdBlockStatus;
            string invalid = null;
            uint error = P.EINVAL;
            if (!known) invalid = $"unknown command {r.Type}";
            else if ((r.Flags & ~AllowedFlags(r.Type)) != 0) invalid = $"flags 0x{r.Flags:X} are not valid for command {r.Type}";
            else if (r.Offset > long.MaxValue || r.End > export.Size)
            {
                invalid = $"request at offset {r.Offset} of {r.Length} bytes reaches past the end of the export ({export.Size} bytes)";
                if (r.Type == P.CmdWrite || r.Type == P.CmdWriteZeroes) error = P.ENOSPC;
            }
            else if ((r.Type == P.CmdRead || r.Type == P.CmdWrite) && r.Length > P.BlockSizeMaximum)
                invalid = $"payload of {r.Length} bytes exceeds the maximum of {P.BlockSizeMaximum}";
            else if (r.Type == P.CmdBlockStatus && (!_structured || _contexts.Count == 0))
                invalid = "block status needs structured replies and a metadata context";
            else if (r.Type == P.CmdBlockStatus && r.Length == 0)
                invalid = "block status of zero bytes";
            else if (export.ReadOnly && (r.Type == P.CmdWrite || r.Type == P.CmdWriteZeroes || r.Type == P.CmdTrim))
            {
                invalid = "the export is read-only";
                error = P.EPERM;
            }

            if (invalid != null)
            {
                // Read the payload of a refused write, so the next request header is where it should be.
                if (r.Type == P.CmdWrite) Skip(r.Length);
                ReplyError(r, error, invalid);
                return;
            }

            switch (r.Type)
            {
                case P.CmdRead:
                    BeginRequest(r.Length);
                    ThreadPool.QueueUserWorkItem(_ => { try { Read(export, r); } finally { EndRequest(r.Length); } });
                    break;
                case P.CmdBlockStatus:
                {
                    var contexts = _contexts;
                    BeginRequest(0);
                    ThreadPool.QueueUserWorkItem(_ => { try { BlockStatus(export, r, contexts); } finally { EndRequest(0); } });
                    break;
                }
                case P.CmdWrite:
                {
                    var data = new byte[r.Length];
                    if (!ReadFull(data, 0, data.Length)) throw new IOException("the client disconnected in the middle of a write");
                    Apply(r, () =>
                    {
                        export.Disk.Write((long)r.Offset, data, 0, data.Length);
                        export.CountWritten(data.Length);
                    });
                    break;
                }
                case P.CmdWriteZeroes:
                    if ((r.Flags & P.CmdFlagFastZero) != 0 && !export.Disk.CanWriteZeroesFast((long)r.Offset, r.Length))
                    {
                        ReplyError(r, P.ENOTSUP, "zeroing this range would write data, and FAST_ZERO was asked");
                        return;
                    }
                    Apply(r, () =>
                    {
                        if ((r.Flags & P.CmdFlagNoHole) != 0) WriteZeroData(export, (long)r.Offset, r.Length);
                        else export.Disk.WriteZeroes((long)r.Offset, r.Length);
                        export.CountWritten(r.Length);
                    });
                    break;
                case P.CmdTrim:
                    Apply(r, () => export.Disk.Discard((long)r.Offset, r.Length));
                    break;
                case P.CmdFlush:
                    Apply(r, () => export.Disk.Flush());
                    break;
                case P.CmdCache:
                    // Advisory: the tables that map the range are read into the cache; the data is not.
                    Apply(r, () => export.DataRuns((long)r.Offset, r.Length));
                    break;
            }
        }

        /// <summary>Applies a change in request order on this thread; FUA flushes before the reply.</summary>
        private void Apply(Request r, Action action)
        {
            try
            {
                action();
                if ((r.Flags & P.CmdFlagFua) != 0 && r.Type != P.CmdFlush) _export.Disk.Flush();
            }
            catch (QcowException e)
            {
                ReplyError(r, ErrorFor(e), e.Message);
                return;
            }
            catch (Exception e) when (!(e is OutOfMemoryException))
            {
                ReplyError(r, P.EIO, e.Message);
                return;
            }
            ReplyDone(r);
        }

        private static void WriteZeroData(NbdExport export, long offset, long length)
        {
            var zeros = new byte[(int)Math.Min(length, 1 << 20)];
            for (long done = 0; done < length;)
            {
                int n = (int)Math.Min(zeros.Length, length - done);
                export.Disk.Write(offset + done, zeros, 0, n);
                done += n;
            }
        }

        private static uint ErrorFor(QcowException e)
        {
            switch (e.Kind)
            {
                case QcowErrorKind.InvalidArgument: return P.EINVAL;
                case QcowErrorKind.ReadOnly: return P.EPERM;
                default:
                    return e.InnerException is IOException io && io.Message.IndexOf("space", StringComparison.OrdinalIgnoreCase) >= 0
                        ? P.ENOSPC : P.EIO;
            }
        }

        private void Read(NbdExport export, Request r)
        {
            // Pooled: a fresh array per request costs a zeroing pass and, at 256 KiB and up, a large-object
            // allocation that the garbage collector then has to sweep.
            byte[] data = ArrayPool<byte>.Shared.Rent((int)r.Length);
            try { ReadAndReply(export, r, data); }
            finally { ArrayPool<byte>.Shared.Return(data); }
        }

        private void ReadAndReply(NbdExport export, Request r, byte[] data)
        {
            List<(long offset, long length, bool data)> runs;
            try
            {
                runs = export.DataRuns((long)r.Offset, r.Length);
                foreach (var run in runs)
                {
                    int at = (int)(run.offset - (long)r.Offset);
                    // A pooled buffer holds old bytes: holes are cleared, as they are sent as data without structured replies or with DF.
                    if (run.data) export.Disk.Read(run.offset, data, at, (int)run.length);
                    else Array.Clear(data, at, (int)run.length);
                }
                export.CountRead(r.Length);
            }
            catch (Exception e) when (e is QcowException || e is IOException)
            {
                ReplyError(r, e is QcowException q ? ErrorFor(q) : P.EIO, e.Message);
                return;
            }
            catch (Exception e) when (!(e is OutOfMemoryException))
            {
                // An engine bug must not take the server down: the client sees EIO with the reason.
                ReplyError(r, P.EIO, e.Message);
                return;
            }
            try
            {
                if (!_structured) { SendSimple(r.Cookie, 0, data, (int)r.Length); return; }
                if ((r.Flags & P.CmdFlagDf) != 0 || runs.Count <= 1 && (runs.Count == 0 || runs[0].data))
                {
                    SendChunk(r.Cookie, P.ReplyFlagDone, P.ReplyTypeOffsetData, r.Offset, data, 0, (int)r.Length);
                    return;
                }
                for (int i = 0; i < runs.Count; i++)
                {
                    ushort flags = i == runs.Count - 1 ? P.ReplyFlagDone : (ushort)0;
                    var run = runs[i];
                    if (run.data)
                        SendChunk(r.Cookie, flags, P.ReplyTypeOffsetData, (ulong)run.offset, data, (int)(run.offset - (long)r.Offset), (int)run.length);
                    else
                        SendHole(r.Cookie, flags, (ulong)run.offset, (uint)run.length);
                }
            }
            catch (Exception e) when (e is IOException || e is ObjectDisposedException || e is SocketException)
            {
                // The client went away; the reading thread sees it too.
                Shutdown();
            }
        }

        private void BlockStatus(NbdExport export, Request r, List<string> contexts)
        {
            bool one = (r.Flags & P.CmdFlagReqOne) != 0;
            try
            {
                var chunks = new List<byte[]>();
                for (uint id = 0; id < contexts.Count; id++)
                {
                    var extents = new List<(uint length, uint status)>();
                    long pos = (long)r.Offset, end = r.End;
                    while (pos < end && extents.Count < P.MaxBlockStatusExtents)
                    {
                        var (length, status) = export.ContextExtent(contexts[(int)id], pos, end - pos);
                        length = Math.Min(length, end - pos);
                        if (extents.Count > 0 && extents[extents.Count - 1].status == status)
                            extents[extents.Count - 1] = ((uint)(extents[extents.Count - 1].length + length), status);
                        else
                        {
                            if (one && extents.Count == 1) break;
                            extents.Add(((uint)length, status));
                        }
                        pos += length;
                    }
                    var payload = new byte[P.BlockStatusHeaderLength + extents.Count * P.BlockStatusDescriptorLength];
                    BigEndian.Put32(payload, 0, id);
                    for (int i = 0; i < extents.Count; i++)
                    {
                        BigEndian.Put32(payload, P.BlockStatusHeaderLength + i * P.BlockStatusDescriptorLength, extents[i].length);
                        BigEndian.Put32(payload, P.BlockStatusHeaderLength + i * P.BlockStatusDescriptorLength + 4, extents[i].status);
                    }
                    chunks.Add(payload);
                }
                for (int i = 0; i < chunks.Count; i++)
                    SendChunk(r.Cookie, i == chunks.Count - 1 ? P.ReplyFlagDone : (ushort)0, P.ReplyTypeBlockStatus, null, chunks[i], 0, chunks[i].Length);
            }
            catch (Exception e) when (!(e is OutOfMemoryException))
            {
                ReplyError(r, e is QcowException q ? ErrorFor(q) : P.EIO, e.Message);
            }
        }

        // ================================================================ replies

        private void ReplyDone(Request r)
        {
            SendSimple(r.Cookie, 0, null, 0);
        }

        private void ReplyError(Request r, uint error, string message)
        {
            _server.Report($"request {r.Type} at {r.Offset}+{r.Length}: {message}");
            try
            {
                if (!_structured) { SendSimple(r.Cookie, error, null, 0); return; }
                var text = Encoding.UTF8.GetBytes(message);
                int textLength = Math.Min(text.Length, P.MaxStringLength);
                var payload = new byte[P.ErrorChunkHeaderLength + textLength];
                BigEndian.Put32(payload, 0, error);
                BigEndian.Put16(payload, P.ErrorChunkMessageLengthOffset, (ushort)textLength);
                Buffer.BlockCopy(text, 0, payload, P.ErrorChunkHeaderLength, textLength);
                SendChunk(r.Cookie, P.ReplyFlagDone, P.ReplyTypeError, null, payload, 0, payload.Length);
            }
            catch (Exception e) when (e is IOException || e is ObjectDisposedException || e is SocketException)
            {
                Shutdown();
            }
        }

        private void SendSimple(ulong cookie, uint error, byte[] data, int length)
        {
            var header = new byte[P.SimpleReplyHeaderLength];
            BigEndian.Put32(header, P.SimpleReplyMagicOffset, P.SimpleReplyMagic);
            BigEndian.Put32(header, P.SimpleReplyErrorOffset, error);
            BigEndian.Put64(header, P.SimpleReplyCookieOffset, cookie);
            Send(header, 0, header.Length, data, 0, length);
        }

        /// <summary>One structured chunk; with offset given, the payload starts with it (OFFSET_DATA).</summary>
        private void SendChunk(ulong cookie, ushort flags, ushort type, ulong? offset, byte[] data, int index, int length)
        {
            int extra = offset.HasValue ? P.OffsetDataHeaderLength : 0;
            var header = new byte[P.StructuredReplyHeaderLength + extra];
            BigEndian.Put32(header, P.StructuredReplyMagicOffset, P.StructuredReplyMagic);
            BigEndian.Put16(header, P.StructuredReplyFlagsOffset, flags);
            BigEndian.Put16(header, P.StructuredReplyTypeOffset, type);
            BigEndian.Put64(header, P.StructuredReplyCookieOffset, cookie);
            BigEndian.Put32(header, P.StructuredReplyLengthOffset, (uint)(length + extra));
            if (offset.HasValue) BigEndian.Put64(header, P.StructuredReplyHeaderLength, offset.Value);
            Send(header, 0, header.Length, data, index, length);
        }

        private void SendHole(ulong cookie, ushort flags, ulong offset, uint length)
        {
            var payload = new byte[P.OffsetHoleLength];
            BigEndian.Put64(payload, 0, offset);
            BigEndian.Put32(payload, P.OffsetHoleSizeOffset, length);
            SendChunk(cookie, flags, P.ReplyTypeOffsetHole, null, payload, 0, payload.Length);
        }

        private void Send(byte[] header, int headerIndex, int headerLength, byte[] data, int index, int length)
        {
            lock (_sendLock)
            {
                if (_tls || data == null || length == 0)
                {
                    _stream.Write(header, headerIndex, headerLength);
                    if (data != null && length > 0) _stream.Write(data, index, length);
                    _stream.Flush();
                    return;
                }
                // Plaintext: header and payload leave in one gathered send (one writev, not two sends).
                SendGathered(new ArraySegment<byte>(header, headerIndex, headerLength), new ArraySegment<byte>(data, index, length));
            }
        }

        /// <summary>Sends both segments whole; a blocking socket may take a gathered send in parts.</summary>
        private void SendGathered(ArraySegment<byte> first, ArraySegment<byte> second)
        {
            int sent = _socket.Send(new[] { first, second });
            if (sent < first.Count)
            {
                _socket.Send(first.Array, first.Offset + sent, first.Count - sent, SocketFlags.None);
                sent = first.Count;
            }
            for (int done = sent - first.Count; done < second.Count;)
                done += _socket.Send(second.Array, second.Offset + done, second.Count - done, SocketFlags.None);
        }

        // ================================================================ reading and flow control

        /// <summary>Reads exactly count bytes; false when the peer closed the connection first.</summary>
        private bool ReadFull(byte[] buffer, int index, int count)
        {
            while (count > 0)
            {
                int n = _stream.Read(buffer, index, count);
                if (n <= 0) return false;
                index += n;
                count -= n;
            }
            return true;
        }

        /// <summary>Reads and drops a payload, a bounded buffer at a time.</summary>
        private void Skip(long count)
        {
            var scratch = new byte[(int)Math.Min(count, 64 * 1024)];
            while (count > 0)
            {
                if (!ReadFull(scratch, 0, (int)Math.Min(scratch.Length, count)))
                    throw new IOException("the client disconnected in the middle of a payload");
                count -= Math.Min(scratch.Length, count);
            }
        }

        private void BeginRequest(long bytes)
        {
            lock (_flightLock)
            {
                while (_requestsInFlight >= _options.MaxRequestsInFlight ||
                       (_requestsInFlight > 0 && _bytesInFlight + bytes > _options.MaxBytesInFlight))
                    Monitor.Wait(_flightLock);
                _requestsInFlight++;
                _bytesInFlight += bytes;
            }
        }

        private void EndRequest(long bytes)
        {
            lock (_flightLock)
            {
                _requestsInFlight--;
                _bytesInFlight -= bytes;
                Monitor.PulseAll(_flightLock);
            }
        }

        private void WaitForRequestsInFlight()
        {
            lock (_flightLock)
                while (_requestsInFlight > 0) Monitor.Wait(_flightLock);
        }
    }
}
