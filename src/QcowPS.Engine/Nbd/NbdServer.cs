using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Threading;

namespace QcowPS.Engine.Nbd
{
    /// <summary>
    /// An NBD server (the protocol of the NBD project's doc/proto.md, as qemu-nbd speaks it) over
    /// images the engine opens: it accepts connections on one listening socket, each served by an
    /// NbdConnection, until Stop drains them, flushes and closes the exports.
    /// </summary>
    public sealed class NbdServer : IDisposable
    {
        private const int MaxLogLines = 200;
        /// <summary>How often the accept thread looks whether the server is stopping.</summary>
        private const int AcceptPollMicroseconds = 200_000;
        /// <summary>The accept thread sees the stop within one poll; this only bounds a stuck one.</summary>
        private const int AcceptThreadJoinMilliseconds = 5_000;
        /// <summary>After the sockets of undrained sessions are closed, their threads end within this.</summary>
        private const int AbortJoinMilliseconds = 2_000;

        private readonly Socket _listener;
        private readonly NbdServerOptions _options;
        private readonly Dictionary<string, NbdExport> _exports;
        private readonly List<NbdConnection> _connections = new List<NbdConnection>();
        private readonly List<Thread> _threads = new List<Thread>();
        private readonly Queue<string> _log = new Queue<string>();
        private readonly ManualResetEventSlim _stopped = new ManualResetEventSlim(false);
        private readonly Thread _acceptThread;
        private readonly string _socketPath;
        private int _state = (int)NbdServerState.Running;
        private long _totalConnections;

        private NbdServer(IEnumerable<NbdExport> exports, Socket listener, NbdServerOptions options, string socketPath, string host, int port)
        {
            _exports = new Dictionary<string, NbdExport>(StringComparer.Ordinal);
            foreach (var export in exports)
            {
                if (_exports.ContainsKey(export.Name))
                    throw new QcowException(QcowErrorKind.InvalidArgument, export.Disk.Path, $"Two exports are named '{export.Name}'; export names must differ");
                _exports.Add(export.Name, export);
            }
            if (_exports.Count == 0) throw new QcowException(QcowErrorKind.InvalidArgument, "A server needs at least one export");
            _listener = listener;
            _options = options ?? new NbdServerOptions();
            _socketPath = socketPath;
            SocketPath = socketPath;
            Host = host;
            Port = port;
            StartTime = DateTime.Now;
            _acceptThread = new Thread(AcceptLoop) { IsBackground = true, Name = "NBD accept" };
            _acceptThread.Start();
        }

        /// <summary>Serves the exports on a new Unix socket at path (removed again when the server stops).</summary>
        public static NbdServer ListenUnix(IEnumerable<NbdExport> exports, string path, NbdServerOptions options = null) =>
            new NbdServer(exports, NbdListener.ListenUnix(path, 128), options, path, null, 0);

        /// <summary>Serves the exports on TCP (port 0 picks a free port).</summary>
        public static NbdServer ListenTcp(IEnumerable<NbdExport> exports, IPAddress address, int port, NbdServerOptions options = null)
        {
            var socket = NbdListener.ListenTcp(address, port, 128);
            return new NbdServer(exports, socket, options, null, address.ToString(), ((IPEndPoint)socket.LocalEndPoint).Port);
        }

        /// <summary>Serves the exports on a listening socket this process inherited (systemd socket activation), or returns null.</summary>
        public static NbdServer FromSocketActivation(IEnumerable<NbdExport> exports, NbdServerOptions options = null)
        {
            var socket = NbdListener.FromSocketActivation(out int activator);
            return socket == null ? null : new NbdServer(exports, socket, options, null, null, 0) { IsSocketActivated = true, ActivatorProcessId = activator };
        }

        public IReadOnlyCollection<NbdExport> Exports => _exports.Values;
        public string SocketPath { get; }
        public string Host { get; }
        public int Port { get; }
        public bool IsSocketActivated { get; private set; }

        /// <summary>The process the activator started (LISTEN_PID): this one, or a launcher this one runs under.</summary>
        public int ActivatorProcessId { get; private set; } = -1;

        /// <summary>
        /// True when a socket-activated server's launcher has exited: the activator ends the server by
        /// signalling the process it started, and a launcher (the dotnet muxer) does not pass that on,
        /// so the serving process must notice it was orphaned and stop by itself.
        /// </summary>
        public bool ActivatorGone => IsSocketActivated && !NbdListener.IsSelfOrLauncher(ActivatorProcessId);
        public bool UsesTls => _options.Certificate != null;
        public DateTime StartTime { get; }
        public NbdServerState State => (NbdServerState)Volatile.Read(ref _state);
        internal bool IsStopping => State != NbdServerState.Running;

        /// <summary>Several connections may share one export safely: they all use the same disk object.</summary>
        internal bool MultiConnection => _options.MaxConnections > 1;

        public int Connections { get { lock (_connections) return _connections.Count; } }
        public long TotalConnections => Interlocked.Read(ref _totalConnections);
        public long BytesRead => _exports.Values.Sum(e => e.BytesRead);
        public long BytesWritten => _exports.Values.Sum(e => e.BytesWritten);

        /// <summary>What a client connects to: nbd+unix:///EXPORT?socket=PATH or nbd://HOST:PORT/EXPORT (nbds… with TLS).</summary>
        public string Uri
        {
            get
            {
                string scheme = UsesTls ? "nbds" : "nbd";
                string export = _exports.Count == 1 ? _exports.Keys.First() : "";
                string name = System.Uri.EscapeDataString(export);
                if (SocketPath != null) return $"{scheme}+unix:///{name}?socket={System.Uri.EscapeDataString(SocketPath).Replace("%2F", "/")}";
                if (Host != null)
                {
                    string host = Host.Contains(":") ? $"[{Host}]" : Host;
                    return $"{scheme}://{host}:{Port}/{name}";
                }
                return null;
            }
        }

        /// <summary>The last problems seen (dropped connections, refused requests), newest last.</summary>
        public IReadOnlyList<string> Log { get { lock (_log) return _log.ToArray(); } }

        internal void Report(string message)
        {
            lock (_log)
            {
                _log.Enqueue($"{DateTime.Now:HH:mm:ss.fff} {message}");
                while (_log.Count > MaxLogLines) _log.Dequeue();
            }
        }

        internal NbdExport FindExport(string name) => _exports.TryGetValue(name, out var e) ? e : null;

        private void AcceptLoop()
        {
            while (!IsStopping)
            {
                Socket client;
                try
                {
                    // Poll first: closing a socket does not wake an Accept blocked on an inherited
                    // (socket-activated) fd, and Dispose would then wait for that Accept forever.
                    if (!_listener.Poll(AcceptPollMicroseconds, SelectMode.SelectRead)) continue;
                    client = _listener.Accept();
                }
                catch (SocketException e)
                {
                    if (IsStopping) break;
                    Report($"accept failed: {e.Message}");
                    Thread.Sleep(50);
                    continue;
                }
                catch (ObjectDisposedException)
                {
                    break;
                }
                var connection = new NbdConnection(this, client, _options);
                lock (_connections)
                {
                    if (IsStopping || _connections.Count >= _options.MaxConnections)
                    {
                        Report(IsStopping ? "connection refused: stopping" : $"connection refused: {_options.MaxConnections} connections already");
                        client.Dispose();
                        continue;
                    }
                    _connections.Add(connection);
                    Interlocked.Increment(ref _totalConnections);
                    var thread = new Thread(() => Serve(connection)) { IsBackground = true, Name = "NBD connection" };
                    _threads.Add(thread);
                    thread.Start();
                }
            }
        }

        private void Serve(NbdConnection connection)
        {
            try
            {
                connection.Run();
            }
            finally
            {
                lock (_connections)
                {
                    _connections.Remove(connection);
                    _threads.Remove(Thread.CurrentThread);
                }
            }
        }

        /// <summary>
        /// Stops accepting, ends every session after answering its requests in flight, flushes and
        /// closes the exports (releasing their image locks) and removes the Unix socket.
        /// </summary>
        public void Stop()
        {
            if (Interlocked.CompareExchange(ref _state, (int)NbdServerState.Stopping, (int)NbdServerState.Running) != (int)NbdServerState.Running)
            {
                _stopped.Wait();
                return;
            }
            try
            {
                _acceptThread.Join(AcceptThreadJoinMilliseconds);
                try { _listener.Dispose(); } catch (SocketException) { }
                DrainConnections();
                var errors = new List<Exception>();
                foreach (var export in _exports.Values)
                {
                    try { if (!export.ReadOnly) export.Disk.Flush(); }
                    catch (Exception e) when (e is QcowException || e is IOException) { errors.Add(e); }
                    try { export.Dispose(); }
                    catch (Exception e) when (e is QcowException || e is IOException) { errors.Add(e); }
                }
                if (_socketPath != null)
                {
                    try { File.Delete(_socketPath); } catch (IOException) { } catch (UnauthorizedAccessException) { }
                }
                if (errors.Count > 0)
                    throw new QcowException(QcowErrorKind.IoError, errors[0].Message, errors[0]);
            }
            finally
            {
                Volatile.Write(ref _state, (int)NbdServerState.Stopped);
                _stopped.Set();
            }
        }

        /// <summary>
        /// Asks every session to end after its requests in flight (no more requests are read), waits for
        /// them up to StopDrainMilliseconds in all, then closes the sockets of those still running and
        /// waits a bounded time more: a stop is prompt whatever the clients do.
        /// </summary>
        private void DrainConnections()
        {
            var deadline = Stopwatch.StartNew();
            foreach (var c in ConnectionsNow()) c.Shutdown();
            JoinConnectionThreads(_options.StopDrainMilliseconds, deadline);
            var stragglers = ConnectionsNow();
            if (stragglers.Length == 0) return;
            Report($"stop: {stragglers.Length} connection(s) did not finish within {_options.StopDrainMilliseconds} ms; closing them");
            foreach (var c in stragglers) c.Abort();
            JoinConnectionThreads(_options.StopDrainMilliseconds + AbortJoinMilliseconds, deadline);
        }

        private NbdConnection[] ConnectionsNow()
        {
            lock (_connections) return _connections.ToArray();
        }

        /// <summary>Waits for the connection threads until the stopwatch reaches limit milliseconds.</summary>
        private void JoinConnectionThreads(int limit, Stopwatch clock)
        {
            Thread[] threads;
            lock (_connections) threads = _threads.ToArray();
            foreach (var t in threads)
            {
                long left = limit - clock.ElapsedMilliseconds;
                if (left <= 0 || !t.Join((int)left)) return;
            }
        }

        /// <summary>Blocks until the server has stopped, or the timeout passes (true when stopped).</summary>
        public bool WaitForStop(int millisecondsTimeout = Timeout.Infinite) => _stopped.Wait(millisecondsTimeout);

        public void Dispose() => Stop();
    }
}
