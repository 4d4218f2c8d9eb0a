using System;
using System.Diagnostics;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Reflection;

namespace QcowPS.Engine.Nbd
{
    /// <summary>
    /// Makes the listening socket of a server: a Unix socket, a TCP socket, or one inherited through
    /// systemd socket activation. The engine targets netstandard2.0, which lacks the Unix endpoint and
    /// the socket-from-handle constructor; the runtimes that load QcowPS (.NET 8 and later under
    /// PowerShell 7) have both, so they are found by reflection.
    /// </summary>
    public static class NbdListener
    {
        /// <summary>The fd systemd passes first (SD_LISTEN_FDS_START).</summary>
        public const int ListenFdsStart = 3;

        public static Socket ListenUnix(string path, int backlog)
        {
            if (File.Exists(path) || Directory.Exists(path))
                throw new QcowException(QcowErrorKind.AlreadyExists, path, $"'{path}' already exists; a server's socket must be a new path");
            var type = Type.GetType("System.Net.Sockets.UnixDomainSocketEndPoint, System.Net.Sockets")
                ?? throw new QcowException(QcowErrorKind.Unsupported, path, "This .NET runtime has no Unix domain sockets");
            var endPoint = (EndPoint)Activator.CreateInstance(type, path);
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                socket.Bind(endPoint);
                socket.Listen(backlog);
                return socket;
            }
            catch (SocketException e)
            {
                socket.Dispose();
                throw new QcowException(QcowErrorKind.IoError, path, $"Cannot listen on Unix socket '{path}': {e.Message}", e);
            }
        }

        public static Socket ListenTcp(IPAddress address, int port, int backlog)
        {
            var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
                socket.Bind(new IPEndPoint(address, port));
                socket.Listen(backlog);
                return socket;
            }
            catch (SocketException e)
            {
                socket.Dispose();
                throw new QcowException(QcowErrorKind.IoError, null, $"Cannot listen on {address}:{port}: {e.Message}", e);
            }
        }

        /// <summary>
        /// The listening socket systemd-style socket activation passed on fd 3, or null when the
        /// environment does not pass one to this process. LISTEN_PID names the process the activator
        /// started; that may be a launcher (dotnet, a shell) whose child serves, so the parent's id is
        /// accepted too.
        /// </summary>
        public static Socket FromSocketActivation()
        {
            string fds = Environment.GetEnvironmentVariable("LISTEN_FDS");
            string pid = Environment.GetEnvironmentVariable("LISTEN_PID");
            if (string.IsNullOrEmpty(fds) || string.IsNullOrEmpty(pid)) return null;
            if (!int.TryParse(fds, out int count) || count < 1 || !int.TryParse(pid, out int listenPid)) return null;
            int self = Process.GetCurrentProcess().Id;
            if (listenPid != self && listenPid != ParentProcessId()) return null;
            var handleType = Type.GetType("System.Net.Sockets.SafeSocketHandle, System.Net.Primitives")
                ?? Type.GetType("System.Net.Sockets.SafeSocketHandle, System.Net.Sockets")
                ?? throw new QcowException(QcowErrorKind.Unsupported, null, "This .NET runtime cannot adopt an inherited socket");
            var handle = Activator.CreateInstance(handleType, new IntPtr(ListenFdsStart), true);
            var ctor = typeof(Socket).GetConstructor(new[] { handleType })
                ?? throw new QcowException(QcowErrorKind.Unsupported, null, "This .NET runtime cannot adopt an inherited socket");
            try
            {
                return (Socket)ctor.Invoke(new[] { handle });
            }
            catch (TargetInvocationException e)
            {
                throw new QcowException(QcowErrorKind.IoError, null, $"fd {ListenFdsStart} from socket activation is not a usable socket: {e.InnerException?.Message}", e.InnerException);
            }
        }

        /// <summary>The parent's process id from /proc/self/stat (Linux), or -1.</summary>
        private static int ParentProcessId()
        {
            try
            {
                string stat = File.ReadAllText("/proc/self/stat");
                // pid (comm) state ppid ...; comm may contain spaces and parentheses, so parse after the last ')'.
                var fields = stat.Substring(stat.LastIndexOf(')') + 2).Split(' ');
                return int.Parse(fields[1]);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException || e is FormatException || e is IndexOutOfRangeException)
            {
                return -1;
            }
        }
    }
}
