using System;
using System.Collections.Generic;
using System.Linq;
using QcowPS.Engine.Nbd;

namespace QcowPS
{
    /// <summary>A running (or stopped) NBD server of this session (Start-/Get-/Stop-QcowNbdServer); counters are live.</summary>
    public sealed class QcowNbdServer
    {
        public QcowNbdServer(int id, NbdServer server)
        {
            Id = id;
            Server = server ?? throw new ArgumentNullException(nameof(server));
        }

        public int Id { get; }
        /// <summary>The engine's server; Stop-QcowNbdServer stops it.</summary>
        public NbdServer Server { get; }
        /// <summary>What a client connects to (nbd+unix:///EXPORT?socket=PATH, nbd://HOST:PORT/EXPORT, nbds… with TLS).</summary>
        public string Uri => Server.Uri;
        public string[] Exports => Server.Exports.Select(e => e.Name).ToArray();
        public string[] Paths => Server.Exports.Select(e => e.Disk.Path).ToArray();
        public bool ReadOnly => Server.Exports.All(e => e.ReadOnly);
        public string Socket => Server.SocketPath;
        public string Address => Server.Host;
        public int Port => Server.Port;
        public bool Tls => Server.UsesTls;
        public int Connections => Server.Connections;
        public long TotalConnections => Server.TotalConnections;
        public long BytesRead => Server.BytesRead;
        public long BytesWritten => Server.BytesWritten;
        public NbdServerState State => Server.State;
        public DateTime StartTime => Server.StartTime;
        /// <summary>The last refused requests and dropped connections, newest last.</summary>
        public IReadOnlyList<string> Log => Server.Log;

        public override string ToString() => Uri;
    }
}
