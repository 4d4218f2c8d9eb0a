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

        /// <summary>A folder with ca-cert.pem (and client-cert.pem, client-key.pem); the URI's tls-certificates overrides it.</summary>
        public string TlsCertificates { get; set; }
    }
}
