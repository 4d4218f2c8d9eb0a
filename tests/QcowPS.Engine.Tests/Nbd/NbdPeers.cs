using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using QcowPS.Engine.Nbd;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;

namespace QcowPS.Engine.Tests.Nbd
{
    /// <summary>
    /// The real NBD peers the server is tested against (libnbd-bin, python3-libnbd, nbdkit, qemu-utils),
    /// run as processes. Under CI=true a missing peer fails the test; elsewhere the test is skipped.
    /// </summary>
    public static class NbdPeers
    {
        /// <summary>nbdsh runs "python3 -m nbd": the Debian python3 has the module, a pyenv one first on PATH may not.</summary>
        private static readonly string SystemPath = "/usr/bin:/bin:/usr/sbin:/sbin:" + Environment.GetEnvironmentVariable("PATH");

        public static void Require(params string[] tools)
        {
            Qemu.Require();
            foreach (var tool in tools)
            {
                if (SystemPath.Split(':').Any(d => d.Length > 0 && File.Exists(Path.Combine(d, tool)))) continue;
                if (Qemu.IsCI) Assert.Fail($"{tool} is not installed, and CI=true: install libnbd-bin, python3-libnbd, nbdkit and qemu-utils (.ci/run does)");
                Skip.If(true, $"{tool} is not installed; NBD interop test skipped outside CI");
            }
        }

        /// <summary>
        /// Waits until a peer listens on its Unix socket. The socket file appears at bind(), before listen():
        /// a client connecting in between is refused (seen under load as "Connection refused" from a peer
        /// that had "started"). So the socket must be listed as listening in /proc/net/unix (flag
        /// __SO_ACCEPTCON); no probe connection is made, which a peer with a connection limit would count.
        /// Where /proc/net/unix cannot be read, the file's existence is all there is to wait for.
        /// </summary>
        public static void WaitUntilListening(string socket, Process process, string tool, Func<string> stderr = null, int timeoutSeconds = 20)
        {
            var deadline = DateTime.UtcNow.AddSeconds(timeoutSeconds);
            while (!IsListening(socket))
            {
                if (process.HasExited) throw new InvalidOperationException($"{tool} exited: {stderr?.Invoke()}");
                if (DateTime.UtcNow > deadline) throw new TimeoutException($"{tool} did not listen on {socket} within {timeoutSeconds} s");
                Thread.Sleep(20);
            }
        }

        /// <summary>True when a Unix socket at this path is in the listening state (or, without /proc/net/unix, when the file exists).</summary>
        public static bool IsListening(string socket)
        {
            if (!File.Exists(socket)) return false;
            string[] lines;
            try { lines = File.ReadAllLines("/proc/net/unix"); }
            catch (IOException) { return true; }
            catch (UnauthorizedAccessException) { return true; }
            const int AcceptingConnections = 0x10000;  // __SO_ACCEPTCON in the Flags column
            foreach (var line in lines)
            {
                // "Num RefCount Protocol Flags Type St Inode Path"
                var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (fields.Length < 8 || fields[7] != socket) continue;
                if ((Convert.ToInt32(fields[3], 16) & AcceptingConnections) != 0) return true;
            }
            return false;
        }

        public static (int exitCode, string stdout, string stderr) TryRun(string tool, IDictionary<string, string> env, params string[] args)
        {
            Require(tool);
            var psi = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.Environment["PATH"] = SystemPath;
            if (env != null) foreach (var kv in env) psi.Environment[kv.Key] = kv.Value;
            foreach (var a in args) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi);
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(180_000))
            {
                p.Kill(true);
                throw new TimeoutException($"{tool} {string.Join(" ", args)} did not finish in 3 minutes");
            }
            return (p.ExitCode, stdout.Result, stderr.Result);
        }

        public static string Run(string tool, params string[] args)
        {
            var (code, stdout, stderr) = TryRun(tool, null, args);
            if (code != 0) throw new InvalidOperationException($"{tool} {string.Join(" ", args)} failed ({code}): {stderr}{stdout}");
            return stdout;
        }

        /// <summary>Runs a peer; when it fails, the failure carries the server's log of what it refused or dropped.</summary>
        public static T WithLog<T>(NbdServer server, Func<T> action)
        {
            try { return action(); }
            catch (InvalidOperationException e)
            {
                throw new InvalidOperationException(e.Message + "\nserver log:\n" + string.Join("\n", server.Log), e);
            }
        }

        /// <summary>Runs an nbdsh script (Python, with h the handle) and returns what it printed.</summary>
        public static string Nbdsh(string script)
        {
            var (code, stdout, stderr) = TryRun("nbdsh", null, "-c", script);
            if (code != 0) throw new InvalidOperationException($"nbdsh failed ({code}): {stderr}{stdout}");
            return stdout;
        }

        public static string UnixUri(string socket, string export = "") => $"nbd+unix:///{Uri.EscapeDataString(export)}?socket={socket}";

        /// <summary>Serves one image read-only (or writable) from a new Unix socket in dir.</summary>
        public static NbdServer Serve(TempDir dir, string image, bool writable = false, string snapshot = null, string socketName = "ours.sock", NbdServerOptions options = null)
        {
            var disk = DiskImage.Open(image, new OpenOptions { Writable = writable });
            VirtualDisk served = disk;
            try
            {
                if (snapshot != null) served = ((Qcow2.Qcow2Image)disk).OpenSnapshot(snapshot);
                var export = new NbdExport("", served, !writable, owner: disk);
                return NbdServer.ListenUnix(new[] { export }, dir.File(socketName), options);
            }
            catch
            {
                if (!ReferenceEquals(served, disk)) served.Dispose();
                disk.Dispose();
                throw;
            }
        }

        /// <summary>qemu-nbd serving the same image read-only on a Unix socket, the reference; kill it with Dispose.</summary>
        public sealed class QemuNbd : IDisposable
        {
            private readonly Process _process;
            public string Socket { get; }
            public string Uri => UnixUri(Socket);

            public QemuNbd(TempDir dir, string image, string format, string snapshot = null, string bitmap = null)
            {
                Require("qemu-nbd");
                Socket = dir.File("qemu.sock");
                var psi = new ProcessStartInfo("qemu-nbd") { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
                foreach (var a in new[] { "-r", "-t", "-e", "0", "-A", "-f", format, "-k", Socket }) psi.ArgumentList.Add(a);
                if (snapshot != null) psi.ArgumentList.Add("-l" + snapshot);
                if (bitmap != null) { psi.ArgumentList.Add("-B"); psi.ArgumentList.Add(bitmap); }
                psi.ArgumentList.Add(image);
                _process = Process.Start(psi);
                try { WaitUntilListening(Socket, _process, "qemu-nbd", () => _process.StandardError.ReadToEnd()); }
                catch (TimeoutException) { Dispose(); throw; }
            }

            public void Dispose()
            {
                try { if (!_process.HasExited) { _process.Kill(); _process.WaitForExit(10_000); } }
                finally { _process.Dispose(); }
            }
        }
    }
}
