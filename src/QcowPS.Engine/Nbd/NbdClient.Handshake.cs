using System;
using System.Collections.Generic;
using System.IO;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Nbd
{
    /// <summary>The handshake: fixed newstyle, STARTTLS, STRUCTURED_REPLY, SET_META_CONTEXT, GO (EXPORT_NAME for old servers).</summary>
    public sealed partial class NbdClient
    {
        /// <summary>The files of a tls-certificates folder, named as qemu's tls-creds-x509 names them.</summary>
        private const string CaCertificateFile = "ca-cert.pem";
        /// <summary>The client's certificate and private key in a tls-certificates folder (QEMU's tls-creds-x509 names).</summary>
        private const string ClientCertificateFile = "client-cert.pem", ClientKeyFile = "client-key.pem";

        /// <summary>The certificate presented to the server (client-cert.pem of the tls-certificates folder), or null.</summary>
        private X509Certificate2 _clientCertificate;

        /// <summary>Why ValidateServerCertificate refused the server's certificate, for the error the handshake then raises.</summary>
        private string _certificateRefusal;

        private void Negotiate()
        {
            var greeting = ReadBytes(NbdProtocol.GreetingOptionMagicOffset + 8);
            if (BigEndian.U64(greeting, NbdProtocol.GreetingInitialMagicOffset) != NbdProtocol.InitialMagic)
                throw Violation("its greeting does not start with NBDMAGIC (is it an NBD server?)");
            ulong second = BigEndian.U64(greeting, NbdProtocol.GreetingOptionMagicOffset);
            if (second == NbdProtocol.OldstyleMagic)
                throw new NbdException(NbdFailure.Refused, Server, $"NBD server '{Server}' speaks only the oldstyle handshake, which QcowPS does not");
            if (second != NbdProtocol.OptionMagic)
                throw Violation($"its greeting has magic 0x{second:X16}, neither IHAVEOPT nor the oldstyle magic");
            ushort handshakeFlags = BigEndian.U16(ReadBytes(2), 0);
            bool fixedNewstyle = (handshakeFlags & NbdProtocol.FlagFixedNewstyle) != 0;
            bool noZeroes = (handshakeFlags & NbdProtocol.FlagNoZeroes) != 0;
            var clientFlags = new byte[NbdProtocol.ClientFlagsLength];
            BigEndian.Put32(clientFlags, 0, (fixedNewstyle ? NbdProtocol.FlagClientFixedNewstyle : 0) | (noZeroes ? NbdProtocol.FlagClientNoZeroes : 0));
            _stream.Write(clientFlags, 0, clientFlags.Length);

            if (!fixedNewstyle)
            {
                // Plain newstyle: NBD_OPT_EXPORT_NAME is the only option a server of that kind surely knows.
                if (_uri.RequiresTls) throw new NbdException(NbdFailure.Refused, Server, $"NBD server '{Server}' does not speak fixed newstyle, so TLS cannot be negotiated, and {_uri.Scheme}:// requires it");
                ExportNameHandshake(noZeroes);
                return;
            }
            if (_uri.RequiresTls) StartTls();
            StructuredReplies = SimpleOption(NbdProtocol.OptStructuredReply);
            if (StructuredReplies) SetMetaContexts();
            if (!Go()) ExportNameHandshake(noZeroes);
        }

        private void SendOption(uint option, byte[] data)
        {
            var header = new byte[NbdProtocol.OptionHeaderLength];
            BigEndian.Put64(header, NbdProtocol.OptionMagicOffset, NbdProtocol.OptionMagic);
            BigEndian.Put32(header, NbdProtocol.OptionCodeOffset, option);
            BigEndian.Put32(header, NbdProtocol.OptionLengthOffset, (uint)(data?.Length ?? 0));
            _stream.Write(header, 0, header.Length);
            if (data != null && data.Length > 0) _stream.Write(data, 0, data.Length);
            _stream.Flush();
        }

        private uint ReadOptionReply(uint option, out byte[] payload)
        {
            var header = ReadBytes(NbdProtocol.OptionReplyHeaderLength);
            ulong magic = BigEndian.U64(header, NbdProtocol.OptionReplyMagicOffset);
            if (magic != NbdProtocol.OptionReplyMagic) throw Violation($"an option reply has magic 0x{magic:X16}");
            uint echoed = BigEndian.U32(header, NbdProtocol.OptionReplyOptionOffset);
            if (echoed != option) throw Violation($"it answered option {option} with a reply to option {echoed}");
            uint type = BigEndian.U32(header, NbdProtocol.OptionReplyTypeOffset);
            uint length = BigEndian.U32(header, NbdProtocol.OptionReplyLengthOffset);
            if (length > MaxOptionReplyLength) throw Violation($"an option reply claims {length} bytes (at most {MaxOptionReplyLength} are accepted)");
            payload = ReadBytes((int)length);
            return type;
        }

        /// <summary>An option with no data whose answer is ACK (true) or an error (false: the server does not do it).</summary>
        private bool SimpleOption(uint option)
        {
            SendOption(option, null);
            uint type = ReadOptionReply(option, out var payload);
            if (type == NbdProtocol.RepAck)
            {
                if (payload.Length != 0) throw Violation($"an ACK to option {option} carries {payload.Length} bytes");
                return true;
            }
            if ((type & NbdProtocol.RepErrorBit) != 0) return false;
            throw Violation($"option {option} was answered with reply type {type}");
        }

        private void StartTls()
        {
            SendOption(NbdProtocol.OptStartTls, null);
            uint type = ReadOptionReply(NbdProtocol.OptStartTls, out var payload);
            if (type != NbdProtocol.RepAck)
                throw new NbdException(NbdFailure.Refused, Server,
                    $"NBD server '{Server}' refused TLS ({NbdErrors.OptionErrorName(type)}{Message(payload)}), and {_uri.Scheme}:// requires it");
            if (payload.Length != 0) throw Violation($"its ACK to STARTTLS carries {payload.Length} bytes");
            var authorities = LoadCertificateAuthorities();
            _clientCertificate = LoadClientCertificate();
            var clientCertificates = _clientCertificate == null ? null : new X509CertificateCollection { _clientCertificate };
            var ssl = new SslStream(_stream, false, (sender, certificate, chain, errors) => ValidateServerCertificate(certificate, errors, authorities),
                (sender, host, local, remote, issuers) => _clientCertificate);
            try
            {
                ssl.AuthenticateAsClient(TlsTargetHost, clientCertificates, SslProtocols.None, false);
            }
            catch (AuthenticationException e)
            {
                ssl.Dispose();
                string why = _certificateRefusal ?? $"{e.Message}{(e.InnerException != null ? " " + e.InnerException.Message : "")}";
                throw new NbdException(NbdFailure.Refused, Server, $"TLS with NBD server '{Server}' failed: {why}", 0, e);
            }
            _stream = ssl;
            Tls = true;
        }

        /// <summary>
        /// The name the server's certificate must carry: tls-hostname, else the URI's host. A Unix socket has
        /// no host, so without tls-hostname only the chain is checked there, as qemu and libnbd do.
        /// </summary>
        private string ExpectedHostname => _uri.TlsHostname ?? (_uri.IsUnix ? null : _uri.Host);

        /// <summary>SNI and the name SslStream checks; "localhost" when nothing names the server (its name check is then ignored).</summary>
        private string TlsTargetHost => ExpectedHostname ?? "localhost";

        private string CertificateFolder => _uri.TlsCertificates ?? _options.TlsCertificates;

        /// <summary>
        /// The client certificate of the tls-certificates folder: client-cert.pem with its key client-key.pem
        /// (PEM), presented to a server that asks for one (qemu-nbd's default verify-peer=on, nbdkit
        /// --tls-verify-peer); null when the folder has neither. The engine targets netstandard2.0, which
        /// cannot read a PEM key, so X509Certificate2.CreateFromPemFile (.NET 5 and later, which PowerShell 7
        /// runs on) is found at run time.
        /// </summary>
        private X509Certificate2 LoadClientCertificate()
        {
            string folder = CertificateFolder;
            if (folder == null) return null;
            string cert = Path.Combine(folder, ClientCertificateFile), key = Path.Combine(folder, ClientKeyFile);
            bool hasCert = File.Exists(cert), hasKey = File.Exists(key);
            if (!hasCert && !hasKey) return null;
            if (!hasCert || !hasKey)
                throw new QcowException(QcowErrorKind.NotFound, hasCert ? key : cert,
                    $"The TLS certificate folder '{folder}' of '{Server}' has {(hasCert ? ClientCertificateFile : ClientKeyFile)} but no {(hasCert ? ClientKeyFile : ClientCertificateFile)}: a client certificate needs both");
            var load = typeof(X509Certificate2).GetMethod("CreateFromPemFile", new[] { typeof(string), typeof(string) });
            if (load == null)
                throw new QcowException(QcowErrorKind.Unsupported, cert,
                    $"This .NET runtime cannot load the client certificate '{cert}' with its key '{key}' (X509Certificate2.CreateFromPemFile needs .NET 5 or later; PowerShell 7 has it)");
            try
            {
                return (X509Certificate2)load.Invoke(null, new object[] { cert, key });
            }
            catch (System.Reflection.TargetInvocationException e) when (e.InnerException != null)
            {
                throw new QcowException(QcowErrorKind.InvalidArgument, cert,
                    $"The client certificate '{cert}' with its key '{key}' cannot be loaded: {e.InnerException.Message}", e.InnerException);
            }
        }

        /// <summary>The CA certificates of the tls-certificates folder (PEM); null means the system's trust store.</summary>
        private X509Certificate2Collection LoadCertificateAuthorities()
        {
            string folder = CertificateFolder;
            if (folder == null) return null;
            string file = Path.Combine(folder, CaCertificateFile);
            if (!File.Exists(file))
                throw new QcowException(QcowErrorKind.NotFound, file, $"The TLS certificate folder '{folder}' of '{Server}' has no {CaCertificateFile}");
            var result = new X509Certificate2Collection();
            const string begin = "-----BEGIN CERTIFICATE-----", end = "-----END CERTIFICATE-----";
            string text = File.ReadAllText(file);
            for (int at = text.IndexOf(begin, StringComparison.Ordinal); at >= 0; at = text.IndexOf(begin, at, StringComparison.Ordinal))
            {
                int stop = text.IndexOf(end, at, StringComparison.Ordinal);
                if (stop < 0) break;
                string base64 = text.Substring(at + begin.Length, stop - at - begin.Length);
                try { result.Add(new X509Certificate2(Convert.FromBase64String(base64))); }
                catch (Exception e) when (e is FormatException || e is System.Security.Cryptography.CryptographicException)
                {
                    throw new QcowException(QcowErrorKind.InvalidArgument, file, $"'{file}' holds a certificate that cannot be read: {e.Message}", e);
                }
                at = stop + end.Length;
            }
            if (result.Count == 0) throw new QcowException(QcowErrorKind.InvalidArgument, file, $"'{file}' holds no PEM certificate");
            return result;
        }

        /// <summary>
        /// The server's certificate must chain to one of the folder's CAs (or, without a folder, to the
        /// system store) and name the host; tls-verify-peer=0 turns the check off, as qemu's verify-peer does.
        /// A refusal leaves its reason in _certificateRefusal, which the handshake's error then names.
        /// </summary>
        private bool ValidateServerCertificate(X509Certificate certificate, SslPolicyErrors errors, X509Certificate2Collection authorities)
        {
            _certificateRefusal = CertificateRefusal(certificate, errors, authorities);
            return _certificateRefusal == null;
        }

        /// <summary>Null when the certificate is trusted, else why it is not.</summary>
        private string CertificateRefusal(X509Certificate certificate, SslPolicyErrors errors, X509Certificate2Collection authorities)
        {
            if (!_uri.TlsVerifyPeer) return null;
            if (certificate == null) return "the server sent no certificate";
            string trust = CertificateFolder == null ? "the system's trusted CAs" : $"the CA in '{Path.Combine(CertificateFolder, CaCertificateFile)}'";
            if (ExpectedHostname != null && (errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
                return $"its certificate ('{certificate.Subject}') is not for host '{ExpectedHostname}' (tls-hostname= names the host to expect)";
            if (authorities == null)
                return (errors & ~SslPolicyErrors.RemoteCertificateNameMismatch) == SslPolicyErrors.None ? null
                    : $"its certificate ('{certificate.Subject}', issued by '{certificate.Issuer}') is not signed by {trust} ({errors})";
            using (var chain = new X509Chain())
            using (var server = new X509Certificate2(certificate))
            {
                chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                chain.ChainPolicy.VerificationFlags = X509VerificationFlags.AllowUnknownCertificateAuthority;
                chain.ChainPolicy.ExtraStore.AddRange(authorities);
                if (chain.Build(server))
                {
                    var root = chain.ChainElements[chain.ChainElements.Count - 1].Certificate;
                    foreach (var ca in authorities)
                        if (string.Equals(ca.Thumbprint, root.Thumbprint, StringComparison.OrdinalIgnoreCase)) return null;
                }
                return $"its certificate ('{server.Subject}', issued by '{server.Issuer}') is not signed by {trust}";
            }
        }

        /// <summary>
        /// Asks for base:allocation and qemu:allocation-depth (and any extra contexts); keeps those the server
        /// agrees to. An extra context ending in ':' (qemu:dirty-bitmap:) is a namespace: the server is asked
        /// to LIST it first, and every context it lists is asked for by name.
        /// </summary>
        private void SetMetaContexts()
        {
            var queries = new List<string> { NbdProtocol.ContextBaseAllocation, NbdProtocol.ContextQemuAllocationDepth };
            foreach (var extra in _options.ExtraContexts)
            {
                var names = extra.EndsWith(":", StringComparison.Ordinal) ? ListMetaContexts(extra) : new List<string> { extra };
                foreach (var name in names) if (!queries.Contains(name)) queries.Add(name);
            }
            var data = new List<byte>();
            AppendString32(data, _uri.ExportName);
            AppendU32(data, (uint)queries.Count);
            foreach (var query in queries) AppendString32(data, query);
            SendOption(NbdProtocol.OptSetMetaContext, data.ToArray());
            for (int replies = 0; ; replies++)
            {
                if (replies > MaxOptionReplies) throw Violation($"it sent more than {MaxOptionReplies} replies to SET_META_CONTEXT");
                uint type = ReadOptionReply(NbdProtocol.OptSetMetaContext, out var payload);
                if (type == NbdProtocol.RepAck) return;
                if ((type & NbdProtocol.RepErrorBit) != 0)
                {
                    // No contexts (an old server, or an export GO will name as unknown): block status is not used.
                    _contextIds.Clear();
                    _contextNames.Clear();
                    return;
                }
                if (type != NbdProtocol.RepMetaContext) throw Violation($"SET_META_CONTEXT was answered with reply type {type}");
                if (payload.Length < NbdProtocol.MetaContextIdLength) throw Violation("a META_CONTEXT reply is too short for its id");
                uint id = BigEndian.U32(payload, 0);
                string name = Encoding.UTF8.GetString(payload, NbdProtocol.MetaContextIdLength, payload.Length - NbdProtocol.MetaContextIdLength);
                if (!queries.Contains(name)) throw Violation($"it agreed to metadata context '{Printable(payload, 4, payload.Length - 4)}', which was not asked for");
                if (_contextNames.ContainsKey(id) || _contextIds.ContainsKey(name)) throw Violation($"it gave metadata context id {id} ('{name}') twice");
                _contextNames[id] = name;
                _contextIds[name] = id;
            }
        }

        /// <summary>
        /// NBD_OPT_LIST_META_CONTEXT of one namespace query: the selectable contexts the server lists in it.
        /// A server that refuses the option lists none; one that lists a context outside the namespace breaks
        /// the protocol. Wildcards it lists back (names ending in ':') cannot be selected and are left out.
        /// </summary>
        private List<string> ListMetaContexts(string query)
        {
            var data = new List<byte>();
            AppendString32(data, _uri.ExportName);
            AppendU32(data, 1);
            AppendString32(data, query);
            SendOption(NbdProtocol.OptListMetaContext, data.ToArray());
            var listed = new List<string>();
            for (int replies = 0; ; replies++)
            {
                if (replies > MaxOptionReplies) throw Violation($"it sent more than {MaxOptionReplies} replies to LIST_META_CONTEXT");
                uint type = ReadOptionReply(NbdProtocol.OptListMetaContext, out var payload);
                if (type == NbdProtocol.RepAck) return listed;
                if ((type & NbdProtocol.RepErrorBit) != 0) return new List<string>();  // the spec: disregard what came before an error
                if (type != NbdProtocol.RepMetaContext) throw Violation($"LIST_META_CONTEXT was answered with reply type {type}");
                if (payload.Length < NbdProtocol.MetaContextIdLength) throw Violation("a META_CONTEXT reply is too short for its id");
                string name = Encoding.UTF8.GetString(payload, NbdProtocol.MetaContextIdLength, payload.Length - NbdProtocol.MetaContextIdLength);
                if (!name.StartsWith(query, StringComparison.Ordinal))
                    throw Violation($"it listed metadata context '{Printable(payload, NbdProtocol.MetaContextIdLength, payload.Length - NbdProtocol.MetaContextIdLength)}' for the query '{query}'");
                if (!name.EndsWith(":", StringComparison.Ordinal) && !listed.Contains(name)) listed.Add(name);
            }
        }

        /// <summary>NBD_OPT_GO with the name, description and block size infos; false when the server does not know GO.</summary>
        private bool Go()
        {
            var data = new List<byte>();
            AppendString32(data, _uri.ExportName);
            var infos = new[] { NbdProtocol.InfoName, NbdProtocol.InfoDescription, NbdProtocol.InfoBlockSize };
            data.Add((byte)(infos.Length >> 8));
            data.Add((byte)infos.Length);
            foreach (var info in infos)
            {
                data.Add((byte)(info >> 8));
                data.Add((byte)info);
            }
            SendOption(NbdProtocol.OptGo, data.ToArray());
            bool haveExport = false;
            ExportName = _uri.ExportName;
            for (int replies = 0; ; replies++)
            {
                if (replies > MaxOptionReplies) throw Violation($"it sent more than {MaxOptionReplies} replies to GO");
                uint type = ReadOptionReply(NbdProtocol.OptGo, out var payload);
                if (type == NbdProtocol.RepAck)
                {
                    if (!haveExport) throw Violation("it ended GO without NBD_INFO_EXPORT (size and flags)");
                    return true;
                }
                if (type == NbdProtocol.RepErrUnsup) return false;
                if ((type & NbdProtocol.RepErrorBit) != 0) throw GoRefused(type, payload);
                if (type != NbdProtocol.RepInfo) throw Violation($"GO was answered with reply type {type}");
                if (payload.Length < NbdProtocol.InfoTypeLength) throw Violation("an INFO reply is too short for its type");
                switch (BigEndian.U16(payload, 0))
                {
                    case NbdProtocol.InfoExport:
                        if (payload.Length != NbdProtocol.InfoExportLength) throw Violation($"NBD_INFO_EXPORT has {payload.Length} bytes, not {NbdProtocol.InfoExportLength}");
                        SetExport(BigEndian.U64(payload, NbdProtocol.InfoExportSizeOffset), BigEndian.U16(payload, NbdProtocol.InfoExportFlagsOffset));
                        haveExport = true;
                        break;
                    case NbdProtocol.InfoName:
                        ExportName = Encoding.UTF8.GetString(payload, NbdProtocol.InfoTypeLength, payload.Length - NbdProtocol.InfoTypeLength);
                        break;
                    case NbdProtocol.InfoDescription:
                        Description = Printable(payload, NbdProtocol.InfoTypeLength, payload.Length - NbdProtocol.InfoTypeLength);
                        break;
                    case NbdProtocol.InfoBlockSize:
                        if (payload.Length != NbdProtocol.InfoBlockSizeLength) throw Violation($"NBD_INFO_BLOCK_SIZE has {payload.Length} bytes, not {NbdProtocol.InfoBlockSizeLength}");
                        SetBlockSizes(BigEndian.U32(payload, NbdProtocol.InfoBlockSizeMinimumOffset),
                                      BigEndian.U32(payload, NbdProtocol.InfoBlockSizePreferredOffset),
                                      BigEndian.U32(payload, NbdProtocol.InfoBlockSizeMaximumOffset));
                        break;
                    default:
                        break;  // an info we did not ask for: the spec lets the client ignore it
                }
            }
        }

        private NbdException GoRefused(uint type, byte[] payload)
        {
            string why;
            switch (type)
            {
                case NbdProtocol.RepErrUnknown: why = $"has no export named '{_uri.ExportName}'"; break;
                case NbdProtocol.RepErrTlsReqd: why = "requires TLS (use an nbds:// or nbds+unix:// URI)"; break;
                case NbdProtocol.RepErrPolicy: why = "refused the export by its policy"; break;
                case NbdProtocol.RepErrShutdown: why = "is shutting down"; break;
                default: why = $"refused the export"; break;
            }
            return new NbdException(NbdFailure.Refused, Server, $"NBD server '{Server}' {why} ({NbdErrors.OptionErrorName(type)}{Message(payload)})");
        }

        private static string Message(byte[] payload) => payload.Length == 0 ? "" : ": " + Printable(payload, 0, payload.Length);

        private void ExportNameHandshake(bool noZeroes)
        {
            SendOption(NbdProtocol.OptExportName, Utf8(_uri.ExportName));
            ExportNameOnly = true;
            ExportName = _uri.ExportName;
            byte[] reply;
            try
            {
                reply = ReadBytes(NbdProtocol.ExportNameReplyLength);
            }
            catch (EndOfStreamException e)
            {
                // The only way EXPORT_NAME says no is to close the connection.
                throw new NbdException(NbdFailure.Refused, Server, $"NBD server '{Server}' closed the connection on export name '{_uri.ExportName}' (no such export?)", 0, e);
            }
            SetExport(BigEndian.U64(reply, NbdProtocol.ExportNameReplySizeOffset), BigEndian.U16(reply, NbdProtocol.ExportNameReplyFlagsOffset));
            if (!noZeroes) Skip(NbdProtocol.ExportNameReplyZeroesLength);
        }

        private void SetExport(ulong size, ushort flags)
        {
            if (size > MaxExportSize) throw Violation($"it gives the export a size of {size} bytes, 2^63 or more");
            Size = (long)size;
            TransmissionFlags = flags;
        }

        private void SetBlockSizes(uint minimum, uint preferred, uint maximum)
        {
            bool PowerOfTwo(uint v) => v != 0 && (v & (v - 1)) == 0;
            if (!PowerOfTwo(minimum) || minimum > 64 * 1024)
                throw Violation($"its minimum block size {minimum} is not a power of two up to 64 KiB");
            if (!PowerOfTwo(preferred) || preferred < minimum)
                throw Violation($"its preferred block size {preferred} is not a power of two at least the minimum {minimum}");
            if (maximum != uint.MaxValue && (maximum < minimum || maximum % minimum != 0))
                throw Violation($"its maximum block size {maximum} is not a multiple of the minimum {minimum}");
            MinimumBlockSize = minimum;
            PreferredBlockSize = preferred;
            // We never send more than the spec's default maximum payload in one request, whatever the server allows.
            MaximumBlockSize = Math.Min(maximum, NbdProtocol.BlockSizeMaximum);
        }

        private static void AppendU32(List<byte> data, uint v)
        {
            data.Add((byte)(v >> 24)); data.Add((byte)(v >> 16)); data.Add((byte)(v >> 8)); data.Add((byte)v);
        }

        private static void AppendString32(List<byte> data, string s)
        {
            var bytes = Utf8(s);
            AppendU32(data, (uint)bytes.Length);
            data.AddRange(bytes);
        }
    }
}
