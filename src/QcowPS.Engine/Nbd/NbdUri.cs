using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace QcowPS.Engine.Nbd
{
    /// <summary>
    /// An NBD URI (../shared/reference/nbd-uri.md): nbd://host[:port]/export, nbd+unix:///export?socket=PATH,
    /// and the TLS schemes nbds:// and nbds+unix://. The one place URIs are parsed: every image parameter
    /// that also takes a URI asks IsNbdUri, then Parse.
    /// </summary>
    public sealed class NbdUri
    {
        public const string SchemeTcp = "nbd";
        public const string SchemeUnix = "nbd+unix";
        public const string SchemeTls = "nbds";
        public const string SchemeTlsUnix = "nbds+unix";

        /// <summary>Query keys: the socket of the +unix schemes, the TLS ones the URI spec names, and our experimental timeout.</summary>
        public const string QuerySocket = "socket";
        public const string QueryTlsCertificates = "tls-certificates";
        public const string QueryTlsType = "tls-type";
        public const string QueryTlsHostname = "tls-hostname";
        public const string QueryTlsVerifyPeer = "tls-verify-peer";
        /// <summary>Seconds a request may wait for the server before the connection is given up (experimental, so x-).</summary>
        public const string QueryTimeout = "x-timeout";

        /// <summary>The URI as given (what error messages and output objects name).</summary>
        public string Text { get; private set; }
        public string Scheme { get; private set; }
        public bool IsUnix => Scheme == SchemeUnix || Scheme == SchemeTlsUnix;
        public bool RequiresTls => Scheme == SchemeTls || Scheme == SchemeTlsUnix;
        /// <summary>TCP host (brackets of an IPv6 literal removed); null for Unix sockets.</summary>
        public string Host { get; private set; }
        public int Port { get; private set; } = NbdProtocol.DefaultPort;
        /// <summary>The Unix socket path; null for TCP.</summary>
        public string Socket { get; private set; }
        /// <summary>The export name: the percent-decoded path without its leading '/'.</summary>
        public string ExportName { get; private set; } = "";
        /// <summary>A folder holding ca-cert.pem (and client-cert.pem, client-key.pem), as qemu's tls-creds-x509 dir.</summary>
        public string TlsCertificates { get; private set; }
        public string TlsHostname { get; private set; }
        /// <summary>False only when tls-verify-peer=0 says not to check the server's certificate.</summary>
        public bool TlsVerifyPeer { get; private set; } = true;
        /// <summary>The x-timeout query parameter; null when the URI sets none.</summary>
        public TimeSpan? Timeout { get; private set; }

        /// <summary>Whether a parameter value is meant as an NBD URI (its scheme is one of ours), not a path.</summary>
        public static bool IsNbdUri(string text)
        {
            if (string.IsNullOrEmpty(text)) return false;
            int colon = text.IndexOf("://", StringComparison.Ordinal);
            if (colon <= 0) return false;
            string scheme = text.Substring(0, colon).ToLowerInvariant();
            return scheme == SchemeTcp || scheme == SchemeUnix || scheme == SchemeTls || scheme == SchemeTlsUnix;
        }

        /// <summary>Parses a URI, refusing what the spec refuses (a +unix scheme without socket=, unknown query keys, bad ports).</summary>
        public static NbdUri Parse(string text)
        {
            if (!IsNbdUri(text))
                throw Invalid(text, "it is not an NBD URI (nbd://, nbd+unix://, nbds://, nbds+unix://)");
            var uri = new NbdUri { Text = text };
            int schemeEnd = text.IndexOf("://", StringComparison.Ordinal);
            uri.Scheme = text.Substring(0, schemeEnd).ToLowerInvariant();
            string rest = text.Substring(schemeEnd + 3);

            string query = null;
            int fragment = rest.IndexOf('#');
            if (fragment >= 0) throw Invalid(text, "an NBD URI has no fragment ('#')");
            int q = rest.IndexOf('?');
            if (q >= 0)
            {
                query = rest.Substring(q + 1);
                rest = rest.Substring(0, q);
            }
            int slash = rest.IndexOf('/');
            string authority = slash >= 0 ? rest.Substring(0, slash) : rest;
            string path = slash >= 0 ? rest.Substring(slash) : "";
            uri.ExportName = path.Length > 0 ? PercentDecode(text, path.Substring(1)) : "";
            if (uri.ExportName.IndexOf('\0') >= 0) throw Invalid(text, "an export name cannot contain NUL");
            if (Encoding.UTF8.GetByteCount(uri.ExportName) > NbdProtocol.MaxStringLength)
                throw Invalid(text, $"the export name is longer than {NbdProtocol.MaxStringLength} bytes");

            ParseQuery(uri, query);
            if (uri.IsUnix)
            {
                if (authority.Length > 0) throw Invalid(text, $"a {uri.Scheme} URI names no host ('{authority}'); the socket is given with ?socket=");
                if (string.IsNullOrEmpty(uri.Socket)) throw Invalid(text, $"a {uri.Scheme} URI needs ?socket=PATH");
                if (uri.Socket[0] == '\0') throw Invalid(text, "abstract Unix sockets are not supported");
            }
            else
            {
                if (uri.Socket != null) throw Invalid(text, $"socket= belongs to the +unix schemes, not {uri.Scheme}");
                ParseAuthority(uri, authority);
            }
            if (!uri.RequiresTls && (uri.TlsCertificates != null || uri.TlsHostname != null))
                throw Invalid(text, $"TLS parameters need a TLS scheme (nbds:// or nbds+unix://), not {uri.Scheme}://");
            return uri;
        }

        private static void ParseAuthority(NbdUri uri, string authority)
        {
            int at = authority.LastIndexOf('@');
            if (at >= 0) authority = authority.Substring(at + 1);  // userinfo: only for TLS kinds we do not speak; ignored
            string host = authority, port = null;
            if (authority.StartsWith("[", StringComparison.Ordinal))
            {
                int close = authority.IndexOf(']');
                if (close < 0) throw Invalid(uri.Text, "an IPv6 address has no closing ']'");
                host = authority.Substring(1, close - 1);
                string after = authority.Substring(close + 1);
                if (after.Length > 0)
                {
                    if (after[0] != ':') throw Invalid(uri.Text, $"unexpected '{after}' after the IPv6 address");
                    port = after.Substring(1);
                }
            }
            else
            {
                int colon = authority.LastIndexOf(':');
                if (colon >= 0)
                {
                    host = authority.Substring(0, colon);
                    port = authority.Substring(colon + 1);
                }
            }
            host = PercentDecode(uri.Text, host);
            if (host.Length == 0) throw Invalid(uri.Text, $"a {uri.Scheme} URI needs a host (nbd://host[:port]/export)");
            uri.Host = host;
            if (!string.IsNullOrEmpty(port))
            {
                if (!int.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out int p) || p < 1 || p > 65535)
                    throw Invalid(uri.Text, $"the port '{port}' is not a number from 1 to 65535");
                uri.Port = p;
            }
        }

        private static void ParseQuery(NbdUri uri, string query)
        {
            if (string.IsNullOrEmpty(query)) return;
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var pair in query.Split('&'))
            {
                if (pair.Length == 0) continue;
                int eq = pair.IndexOf('=');
                string key = PercentDecode(uri.Text, eq >= 0 ? pair.Substring(0, eq) : pair);
                string value = eq >= 0 ? PercentDecode(uri.Text, pair.Substring(eq + 1)) : "";
                if (!seen.Add(key)) throw Invalid(uri.Text, $"the query parameter '{key}' is given twice");
                switch (key)
                {
                    case QuerySocket: uri.Socket = value; break;
                    case QueryTlsCertificates: uri.TlsCertificates = value; break;
                    case QueryTlsHostname: uri.TlsHostname = value; break;
                    case QueryTlsType:
                        if (value != "x509") throw Invalid(uri.Text, $"tls-type '{value}' is not supported (only x509)");
                        break;
                    case QueryTlsVerifyPeer:
                        if (value != "0" && value != "1") throw Invalid(uri.Text, "tls-verify-peer is 0 or 1");
                        uri.TlsVerifyPeer = value == "1";
                        break;
                    case QueryTimeout:
                        if (!double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double seconds) || !(seconds > 0) || seconds > 86400)
                            throw Invalid(uri.Text, $"x-timeout '{value}' is not a number of seconds from 0 to 86400");
                        uri.Timeout = TimeSpan.FromSeconds(seconds);
                        break;
                    default:
                        throw Invalid(uri.Text, $"the query parameter '{key}' is not known (socket, tls-certificates, tls-type, tls-hostname, tls-verify-peer, x-timeout)");
                }
            }
        }

        /// <summary>RFC 3986 percent-decoding of UTF-8; a '%' not followed by two hex digits is refused.</summary>
        private static string PercentDecode(string text, string part)
        {
            if (part.IndexOf('%') < 0) return part;
            var bytes = new List<byte>(part.Length);
            int literalStart = 0;
            for (int i = 0; i < part.Length; i++)
            {
                if (part[i] != '%') continue;
                if (i + 2 >= part.Length || !IsHex(part[i + 1]) || !IsHex(part[i + 2]))
                    throw Invalid(text, $"'%' at '{part.Substring(i)}' is not followed by two hex digits");
                bytes.AddRange(Encoding.UTF8.GetBytes(part.Substring(literalStart, i - literalStart)));
                bytes.Add((byte)int.Parse(part.Substring(i + 1, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                i += 2;
                literalStart = i + 1;
            }
            bytes.AddRange(Encoding.UTF8.GetBytes(part.Substring(literalStart)));
            try
            {
                return new UTF8Encoding(false, true).GetString(bytes.ToArray());
            }
            catch (DecoderFallbackException)
            {
                throw Invalid(text, "its percent-encoded bytes are not UTF-8");
            }
        }

        private static bool IsHex(char c) => (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');

        private static QcowException Invalid(string text, string why) =>
            new QcowException(QcowErrorKind.InvalidArgument, text, $"'{text}' is not a valid NBD URI: {why}");

        /// <summary>Where the server is, for messages: "unix:PATH" or "host:port".</summary>
        public string Endpoint => IsUnix ? "unix:" + Socket : (Host.IndexOf(':') >= 0 ? $"[{Host}]:{Port}" : $"{Host}:{Port}");

        public override string ToString() => Text;
    }
}
