using System.Security.Cryptography.X509Certificates;

namespace QcowPS.Engine.Nbd
{
    /// <summary>How an NbdServer listens and what it allows each connection.</summary>
    public sealed class NbdServerOptions
    {
        /// <summary>With a certificate (and its private key), TLS is required before anything but STARTTLS (FORCEDTLS).</summary>
        public X509Certificate2 Certificate { get; set; }

        /// <summary>Connections served at once; more are accepted and closed at once.</summary>
        public int MaxConnections { get; set; } = 100;

        /// <summary>Requests one connection may have in flight (beyond that the server stops reading its requests).</summary>
        public int MaxRequestsInFlight { get; set; } = 64;

        /// <summary>Payload bytes one connection may have in flight (reads being answered, writes being applied).</summary>
        public long MaxBytesInFlight { get; set; } = 96L * 1024 * 1024;

        /// <summary>Longest option payload accepted during the handshake; longer ones are refused with ERR_TOO_BIG.</summary>
        public int MaxOptionLength { get; set; } = 64 * 1024;

        /// <summary>How long a client may take over the handshake before it is dropped (a half-open socket must not pin a slot).</summary>
        public int HandshakeTimeoutMilliseconds { get; set; } = 30_000;

        /// <summary>
        /// How long Stop lets the sessions answer their requests in flight before it closes their sockets
        /// (a client that stops reading replies must not hold a stop up).
        /// </summary>
        public int StopDrainMilliseconds { get; set; } = 5_000;
    }
}
