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
        /// How many processes may sit between the one the activator started (LISTEN_PID) and the one
        /// that serves: `dotnet pwsh` is the dotnet muxer, which starts the tool's shim, which starts
        /// pwsh, so the server is the grandchild of LISTEN_PID there.
        /// </summary>
        public const int MaxLauncherDepth = 3;

        /// <summary>True when the environment says a socket was passed (LISTEN_FDS and LISTEN_PID are set).</summary>
        public static bool IsSocketActivationRequested =>
            !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("LISTEN_FDS")) &&
            !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("LISTEN_PID"));

        /// <summary>
        /// The listening socket systemd-style socket activation passed on fd 3, or null when the
        /// environment does not pass one to this process. LISTEN_PID names the process the activator
        /// started; that may be a launcher (dotnet, a shell) whose descendant serves, so an ancestor up
        /// to MaxLauncherDepth levels up is accepted too. Because that widens who may claim the fd, fd 3
        /// must also be a listening stream socket, and the variables are removed once it is taken so no
        /// process this one starts claims it again (what sd_listen_fds(1) does).
        /// </summary>
        public static Socket FromSocketActivation() => FromSocketActivation(out _);

        /// <summary>As FromSocketActivation(); activatorProcessId is LISTEN_PID (this process, or the launcher it runs under).</summary>
        public static Socket FromSocketActivation(out int activatorProcessId)
        {
            activatorProcessId = -1;
            string fds = Environment.GetEnvironmentVariable("LISTEN_FDS");
            string pid = Environment.GetEnvironmentVariable("LISTEN_PID");
            if (string.IsNullOrEmpty(fds) || string.IsNullOrEmpty(pid)) return null;
            if (!int.TryParse(fds, out int count) || count < 1 || !int.TryParse(pid, out int listenPid)) return null;
            if (!IsSelfOrLauncher(listenPid)) return null;
            var handleType = Type.GetType("System.Net.Sockets.SafeSocketHandle, System.Net.Primitives")
                ?? Type.GetType("System.Net.Sockets.SafeSocketHandle, System.Net.Sockets")
                ?? throw new QcowException(QcowErrorKind.Unsupported, null, "This .NET runtime cannot adopt an inherited socket");
            var ctor = typeof(Socket).GetConstructor(new[] { handleType })
                ?? throw new QcowException(QcowErrorKind.Unsupported, null, "This .NET runtime cannot adopt an inherited socket");
            Socket socket;
            try
            {
                var handle = Activator.CreateInstance(handleType, new IntPtr(ListenFdsStart), true);
                socket = (Socket)ctor.Invoke(new[] { handle });
            }
            catch (TargetInvocationException e)
            {
                throw new QcowException(QcowErrorKind.IoError, null, $"fd {ListenFdsStart} from socket activation is not a usable socket: {e.InnerException?.Message}", e.InnerException);
            }
            bool listening;
            try
            {
                listening = socket.SocketType == SocketType.Stream &&
                    (int)socket.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.AcceptConnection) != 0;
            }
            catch (SocketException)
            {
                listening = false;
            }
            if (!listening)
            {
                socket.Dispose();
                throw new QcowException(QcowErrorKind.InvalidArgument, null, $"LISTEN_FDS is set, but fd {ListenFdsStart} is not a listening stream socket");
            }
            activatorProcessId = listenPid;
            Environment.SetEnvironmentVariable("LISTEN_FDS", null);
            Environment.SetEnvironmentVariable("LISTEN_PID", null);
            Environment.SetEnvironmentVariable("LISTEN_FDNAMES", null);
            return socket;
        }

        /// <summary>True when listenPid is this process or one of its ancestors up to MaxLauncherDepth levels up.</summary>
        public static bool IsSelfOrLauncher(int listenPid)
        {
            int pid = Process.GetCurrentProcess().Id;
            for (int level = 0; level <= MaxLauncherDepth && pid > 1; level++)
            {
                if (pid == listenPid) return true;
                pid = ParentProcessId(pid);
            }
            return false;
        }

        /// <summary>A process's parent id from /proc/PID/stat (Linux), or -1.</summary>
        private static int ParentProcessId(int pid)
        {
            try
            {
                string stat = File.ReadAllText($"/proc/{pid}/stat");
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
