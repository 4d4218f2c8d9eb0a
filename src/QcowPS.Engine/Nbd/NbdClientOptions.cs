using System;
using System.Collections.Generic;

namespace QcowPS.Engine.Nbd
{
    /// <summary>How NbdClient connects: timeout, writability, which metadata contexts to ask for.</summary>
    public sealed class NbdClientOptions
    {
        /// <summary>The default wait for any answer of the server (a URI's x-timeout overrides it).</summary>
        public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(60);

        /// <summary>How long connecting, each handshake step and each request may wait for the server.</summary>
        public TimeSpan Timeout { get; set; } = DefaultTimeout;

        /// <summary>Refuse a read-only export (the caller means to write).</summary>
        public bool Writable { get; set; }

        /// <summary>Metadata contexts asked for besides base:allocation and qemu:allocation-depth (qemu:dirty-bitmap:NAME).</summary>
        public IList<string> ExtraContexts { get; set; } = new List<string>();

        /// <summary>Requests sent and not yet answered, at most (bounded memory; qemu-nbd serves 16 at a time).</summary>
        public int MaxInFlight { get; set; } = 16;

        /// <summary>Connections a copy of a whole disk opens when the server allows multi-conn: nbdcopy's default.</summary>
        public const int CopyConnections = 4;

        /// <summary>
        /// Connections to open at most, when the server sets CAN_MULTI_CONN (else one): reads and writes are
        /// spread over them, block status stays on the first. A server that refuses an extra connection
        /// leaves the disk with those it accepted.
        /// </summary>
        public int Connections { get; set; } = 1;

        /// <summary>Options for copying a whole export (Convert-QcowImage, Read-QcowBlock -OutFile): several connections where allowed.</summary>
        public static NbdClientOptions ForCopying() => new NbdClientOptions { Connections = CopyConnections };

        /// <summary>
        /// A folder of PEM files in QEMU's tls-creds-x509 layout (the URI's tls-certificates overrides it):
        /// ca-cert.pem, the CAs the server's certificate must chain to; client-cert.pem with client-key.pem,
        /// when both are there, the certificate presented to a server that asks for one. Server files in
        /// the folder (server-cert.pem, server-key.pem) are not read.
        /// </summary>
        public string TlsCertificates { get; set; }
    }
}
