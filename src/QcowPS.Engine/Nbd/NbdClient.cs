using System;
using System.Collections.Generic;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Nbd
{
    /// <summary>
    /// One connection to an NBD server (fixed newstyle handshake, then transmission): requests are sent
    /// by any thread, and one reader thread matches the replies to them by cookie, so that several
    /// requests are in flight at once. Nothing the server sends is trusted: every length is checked
    /// against what was asked before a byte of payload is read, and a reply that breaks the protocol
    /// ends the connection with an NbdException naming the server.
    /// </summary>
    public sealed partial class NbdClient : IDisposable
    {
        /// <summary>Longest option reply accepted: a string of the spec's maximum plus its fixed fields.</summary>
        private const int MaxOptionReplyLength = NbdProtocol.MaxStringLength + 64;
        /// <summary>Most option replies to one option (NBD_REP_INFO, NBD_REP_META_CONTEXT) before we give up on the server.</summary>
        private const int MaxOptionReplies = 1024;
        /// <summary>Longest block status chunk accepted: the spec's SHOULD limit of extents.</summary>
        private const int MaxBlockStatusPayload = NbdProtocol.BlockStatusHeaderLength + NbdProtocol.MaxBlockStatusExtents * NbdProtocol.BlockStatusDescriptorLength;
        /// <summary>An ERROR chunk: its header, a message of the spec's maximum and the offset of ERROR_OFFSET.</summary>
        private const int MaxErrorChunkPayload = NbdProtocol.ErrorChunkHeaderLength + NbdProtocol.MaxStringLength + NbdProtocol.ErrorOffsetFieldLength;
        /// <summary>Export sizes are signed 64-bit in QcowPS (and in the spec's advice): 2^63 and above is refused.</summary>
        private const ulong MaxExportSize = long.MaxValue;

        private readonly NbdUri _uri;
        private readonly NbdClientOptions _options;
        private Socket _socket;
        private Stream _stream;
        private readonly object _sendGate = new object();
        private readonly object _pendingGate = new object();
        private readonly Dictionary<ulong, NbdRequest> _pending = new Dictionary<ulong, NbdRequest>();
        private SemaphoreSlim _inFlight;
        private Thread _reader;
        private long _nextCookie;
        private volatile NbdException _broken;
        private bool _disposed;
        private long _bytesReceived;
        private readonly Dictionary<uint, string> _contextNames = new Dictionary<uint, string>();
        private readonly Dictionary<string, uint> _contextIds = new Dictionary<string, uint>(StringComparer.Ordinal);

        /// <summary>The URI as given: what every error names.</summary>
        public string Server => _uri.Text;
        public NbdUri Uri => _uri;
        public string ExportName { get; private set; }
        public string Description { get; private set; }
        public long Size { get; private set; }
        public ushort TransmissionFlags { get; private set; }
        public uint MinimumBlockSize { get; private set; } = 1;
        public uint PreferredBlockSize { get; private set; } = NbdProtocol.BlockSizePreferred;
        public uint MaximumBlockSize { get; private set; } = NbdProtocol.BlockSizeMaximum;
        public bool StructuredReplies { get; private set; }
        /// <summary>True when the server knew only NBD_OPT_EXPORT_NAME (no INFO/GO): no name, description or block sizes.</summary>
        public bool ExportNameOnly { get; private set; }
        public bool Tls { get; private set; }
        public TimeSpan Timeout => _options.Timeout;

        /// <summary>The metadata contexts the server agreed to, by name.</summary>
        public IReadOnlyCollection<string> Contexts => _contextIds.Keys;

        public bool HasContext(string name) => _contextIds.ContainsKey(name);

        /// <summary>Bytes of data the server sent in read replies (OFFSET_DATA payloads and simple read replies).</summary>
        public long BytesReceived => Interlocked.Read(ref _bytesReceived);

        public bool ReadOnly => (TransmissionFlags & NbdProtocol.FlagReadOnly) != 0;
        public bool CanFlush => Has(NbdProtocol.FlagSendFlush);
        public bool CanTrim => Has(NbdProtocol.FlagSendTrim);
        public bool CanWriteZeroes => Has(NbdProtocol.FlagSendWriteZeroes);
        public bool CanMultiConn => Has(NbdProtocol.FlagCanMultiConn);

        private bool Has(ushort flag) => (TransmissionFlags & flag) != 0;

        private NbdClient(NbdUri uri, NbdClientOptions options)
        {
            _uri = uri;
            _options = options;
        }

        /// <summary>Connects, negotiates and starts the reply reader; throws NbdException on any failure.</summary>
        public static NbdClient Connect(NbdUri uri, NbdClientOptions options = null)
        {
            options = options ?? new NbdClientOptions();
            if (uri.Timeout.HasValue) options.Timeout = uri.Timeout.Value;
            var client = new NbdClient(uri, options);
            try
            {
                client.OpenSocket();
                client.Negotiate();
                client.StartTransmission();
                return client;
            }
            // QcowExceptions (a certificate folder without its files) already name what is wrong: kept as they are.
            catch (Exception e) when (!(e is QcowException))
            {
                client.Dispose();
                // A TLS 1.3 server that wants a client certificate ends the connection only after the TLS
                // handshake, on the first NBD option: say so, since it is qemu-nbd's default.
                throw client.Translate(e, !client.Tls ? "during the handshake"
                    : client._clientCertificate == null
                        ? "during the handshake, after TLS was set up (a server that requires a client certificate, as qemu-nbd's tls-creds-x509 does unless verify-peer=off, ends the connection here; put client-cert.pem and client-key.pem in the tls-certificates folder)"
                        : $"during the handshake, after TLS was set up (a server that does not accept the client certificate '{client._clientCertificate.Subject}', one not signed by a CA it trusts, ends the connection here)");
            }
            catch
            {
                client.Dispose();
                throw;
            }
        }

        /// <summary>The names of the export's transmission flags that are set (for Get-QcowInfo).</summary>
        public IList<string> FlagNames()
        {
            var names = new List<string>();
            void Add(ushort flag, string name) { if (Has(flag)) names.Add(name); }
            Add(NbdProtocol.FlagReadOnly, "READ_ONLY");
            Add(NbdProtocol.FlagSendFlush, "SEND_FLUSH");
            Add(NbdProtocol.FlagSendFua, "SEND_FUA");
            Add(NbdProtocol.FlagRotational, "ROTATIONAL");
            Add(NbdProtocol.FlagSendTrim, "SEND_TRIM");
            Add(NbdProtocol.FlagSendWriteZeroes, "SEND_WRITE_ZEROES");
            Add(NbdProtocol.FlagSendDf, "SEND_DF");
            Add(NbdProtocol.FlagCanMultiConn, "CAN_MULTI_CONN");
            Add(NbdProtocol.FlagSendResize, "SEND_RESIZE");
            Add(NbdProtocol.FlagSendCache, "SEND_CACHE");
            Add(NbdProtocol.FlagSendFastZero, "SEND_FAST_ZERO");
            return names;
        }

        // ================================================================ connection

        private void OpenSocket()
        {
            int timeoutMs = TimeoutMilliseconds;
            try
            {
                if (_uri.IsUnix)
                {
                    if (!File.Exists(_uri.Socket))
                        throw new NbdException(NbdFailure.ConnectionFailed, Server, $"Cannot connect to NBD server '{Server}': the socket '{_uri.Socket}' does not exist");
                    var type = Type.GetType("System.Net.Sockets.UnixDomainSocketEndPoint, System.Net.Sockets")
                        ?? throw new NbdException(NbdFailure.ConnectionFailed, Server, "This .NET runtime has no Unix domain sockets");
                    var endPoint = (EndPoint)Activator.CreateInstance(type, _uri.Socket);
                    _socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                    ConnectWithTimeout(endPoint, timeoutMs);
                }
                else
                {
                    var addresses = IPAddress.TryParse(_uri.Host, out var literal) ? new[] { literal } : Dns.GetHostAddresses(_uri.Host);
                    if (addresses.Length == 0) throw new NbdException(NbdFailure.ConnectionFailed, Server, $"Cannot connect to NBD server '{Server}': '{_uri.Host}' has no address");
                    SocketException last = null;
                    foreach (var address in addresses)
                    {
                        _socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                        try
                        {
                            ConnectWithTimeout(new IPEndPoint(address, _uri.Port), timeoutMs);
                            last = null;
                            break;
                        }
                        catch (SocketException e)
                        {
                            last = e;
                            _socket.Dispose();
                            _socket = null;
                        }
                    }
                    if (last != null) throw last;
                }
            }
            catch (SocketException e)
            {
                throw new NbdException(NbdFailure.ConnectionFailed, Server, $"Cannot connect to NBD server '{Server}' ({_uri.Endpoint}): {e.Message}", 0, e);
            }
            _socket.ReceiveTimeout = timeoutMs;
            _socket.SendTimeout = timeoutMs;
            _stream = new NetworkStream(_socket, false);
        }

        private void ConnectWithTimeout(EndPoint endPoint, int timeoutMs)
        {
            var result = _socket.BeginConnect(endPoint, null, null);
            if (!result.AsyncWaitHandle.WaitOne(timeoutMs))
            {
                _socket.Dispose();
                throw new NbdException(NbdFailure.Timeout, Server, $"Connecting to NBD server '{Server}' ({_uri.Endpoint}) timed out after {_options.Timeout.TotalSeconds:0.###} s");
            }
            _socket.EndConnect(result);
        }

        private int TimeoutMilliseconds => (int)Math.Min(int.MaxValue, Math.Max(1, _options.Timeout.TotalMilliseconds));

        /// <summary>A socket or stream failure as an NbdException naming the server (a timeout as a timeout).</summary>
        private NbdException Translate(Exception e, string when)
        {
            if (e is NbdException n) return n;
            if (_broken != null) return _broken.Again();
            var socketError = (e as SocketException) ?? (e.InnerException as SocketException);
            if (socketError != null && socketError.SocketErrorCode == SocketError.TimedOut)
                return new NbdException(NbdFailure.Timeout, Server, $"NBD server '{Server}' did not answer {when} within {_options.Timeout.TotalSeconds:0.###} s", 0, e);
            if (e is EndOfStreamException)
                return new NbdException(NbdFailure.ConnectionFailed, Server, $"NBD server '{Server}' closed the connection {when}", 0, e);
            return new NbdException(NbdFailure.ConnectionFailed, Server, $"The connection to NBD server '{Server}' failed {when}: {e.Message}", 0, e);
        }

        private NbdException Violation(string what) =>
            new NbdException(NbdFailure.ProtocolViolation, Server, $"NBD server '{Server}' broke the protocol: {what}");

        // ================================================================ wire helpers

        private void ReadExactly(byte[] buffer, int index, int count)
        {
            while (count > 0)
            {
                int n = _stream.Read(buffer, index, count);
                if (n <= 0) throw new EndOfStreamException();
                index += n;
                count -= n;
            }
        }

        private byte[] ReadBytes(int count)
        {
            var b = new byte[count];
            ReadExactly(b, 0, count);
            return b;
        }

        /// <summary>Reads and drops count bytes (a payload we do not keep), a bounded buffer at a time.</summary>
        private void Skip(long count)
        {
            var scratch = new byte[(int)Math.Min(count, 64 * 1024)];
            while (count > 0)
            {
                int n = (int)Math.Min(count, scratch.Length);
                ReadExactly(scratch, 0, n);
                count -= n;
            }
        }

        private static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s ?? "");

        /// <summary>Decodes a string the server sent, for messages: invalid UTF-8 and control characters do not reach the console raw.</summary>
        private static string Printable(byte[] b, int index, int count)
        {
            string s = Encoding.UTF8.GetString(b, index, count);
            var sb = new StringBuilder(s.Length);
            foreach (char c in s) sb.Append(char.IsControl(c) ? '?' : c);
            return sb.ToString();
        }
    }
}
