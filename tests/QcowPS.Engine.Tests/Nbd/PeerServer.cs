using System;
using System.Diagnostics;
using System.IO;
using System.Threading;
using QcowPS.Engine.Tests.Infrastructure;

namespace QcowPS.Engine.Tests.Nbd
{
    /// <summary>
    /// A peer NBD server (qemu-nbd, nbdkit) started by a test on a new Unix socket in the test's temp dir,
    /// killed on Dispose whatever happened. The test's client connects to Uri.
    /// </summary>
    public sealed class PeerServer : IDisposable
    {
        private readonly Process _process;
        public string Socket { get; }
        public string Uri => NbdPeers.UnixUri(Socket);

        private PeerServer(string tool, string socket, string[] args)
        {
            NbdPeers.Require(tool);
            Socket = socket;
            var psi = new ProcessStartInfo(tool) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
            psi.Environment["PATH"] = "/usr/bin:/bin:/usr/sbin:/sbin:" + Environment.GetEnvironmentVariable("PATH");
            foreach (var a in args) psi.ArgumentList.Add(a);
            _process = Process.Start(psi);
            try { NbdPeers.WaitUntilListening(Socket, _process, tool, () => _process.StandardError.ReadToEnd()); }
            catch (TimeoutException) { Dispose(); throw; }
        }

        /// <summary>qemu-nbd serving an image writable (-r not given), with allocation depth.</summary>
        public static PeerServer QemuNbd(TempDir dir, string image, string format, bool writable, params string[] extra)
        {
            string socket = dir.File("qemu-" + Guid.NewGuid().ToString("N").Substring(0, 6) + ".sock");
            var args = new System.Collections.Generic.List<string> { "-t", "-e", "0", "-A", "-f", format, "-k", socket };
            if (!writable) args.Add("-r");
            args.AddRange(extra);
            args.Add(image);
            return new PeerServer("qemu-nbd", socket, args.ToArray());
        }

        /// <summary>nbdkit in the foreground on a Unix socket: options, then the plugin and its arguments.</summary>
        public static PeerServer Nbdkit(TempDir dir, params string[] args)
        {
            string socket = dir.File("kit-" + Guid.NewGuid().ToString("N").Substring(0, 6) + ".sock");
            var all = new System.Collections.Generic.List<string> { "-f", "-U", socket };
            all.AddRange(args);
            return new PeerServer("nbdkit", socket, all.ToArray());
        }

        public void Dispose()
        {
            try { if (!_process.HasExited) { _process.Kill(); _process.WaitForExit(10_000); } }
            finally { _process.Dispose(); }
        }
    }
}
