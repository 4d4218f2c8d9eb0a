using System;
using System.Collections.Generic;
using System.IO;
using System.Management.Automation;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using QcowPS.Engine;
using QcowPS.Engine.Nbd;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>
    /// Exports images over NBD, like qemu-nbd: in the background of the session (Get-/Stop-QcowNbdServer
    /// find it in the session's registry), or in the foreground with -Wait until Ctrl+C.
    /// </summary>
    [Cmdlet(VerbsLifecycle.Start, "QcowNbdServer", DefaultParameterSetName = PathSet, SupportsShouldProcess = true)]
    [OutputType(typeof(QcowNbdServer))]
    public sealed class StartQcowNbdServerCommand : ImageCmdlet
    {
        /// <summary>How often -Wait looks whether the server stopped by itself (Ctrl+C stops it at once).</summary>
        private const int ForegroundPollMilliseconds = 250;

        [Parameter]
        public ImageFormat Format { get; set; } = ImageFormat.Auto;

        /// <summary>Export an internal snapshot (ID or name), read-only, like qemu-nbd -l.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(SnapshotNameCompleter))]
        public string Snapshot { get; set; }

        [Parameter]
        public SwitchParameter ReadOnly { get; set; }

        /// <summary>Listen on a new Unix socket at this path.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string Socket { get; set; }

        /// <summary>Listen on TCP (0: any free port; the object's Port says which).</summary>
        [Parameter]
        [ValidateRange(0, 65535)]
        public int Port { get; set; }

        /// <summary>The TCP address to listen on; loopback unless given.</summary>
        [Parameter]
        [ValidateNotNull]
        public IPAddress Address { get; set; }

        [Parameter]
        [ValidateNotNull]
        [AllowEmptyString]
        public string ExportName { get; set; }

        /// <summary>An X.509 certificate with its private key: TLS is then required (FORCEDTLS).</summary>
        [Parameter]
        [ValidateNotNull]
        public X509Certificate2 Certificate { get; set; }

        [Parameter]
        [ValidateRange(1, 10000)]
        public int MaxConnections { get; set; } = 100;

        /// <summary>Serve in the foreground until Ctrl+C; takes a systemd-activated socket (LISTEN_FDS) when one is passed.</summary>
        [Parameter]
        public SwitchParameter Wait { get; set; }

        private readonly List<string> _paths = new List<string>();
        private volatile NbdServer _foreground;
        private volatile bool _stopping;

        private bool PortGiven => MyInvocation.BoundParameters.ContainsKey(nameof(Port));

        protected override void BeginProcessing()
        {
            base.BeginProcessing();
            if (Socket != null && PortGiven)
                ThrowTerminatingError(ErrorRecords.Argument("ConflictingParameters", null, "-Socket and -Port cannot be used together: a server listens on one socket."));
            if (Address != null && !PortGiven)
                ThrowTerminatingError(ErrorRecords.Argument("ConflictingParameters", Address, "-Address needs -Port (a Unix socket has no address)."));
            if (Certificate != null && !Certificate.HasPrivateKey)
                ThrowTerminatingError(ErrorRecords.Argument("CertificateWithoutKey", Certificate.Subject, $"The certificate '{Certificate.Subject}' has no private key; a TLS server needs it."));
            if (Socket == null && !PortGiven && !(Wait && NbdListener.IsSocketActivationRequested))
                ThrowTerminatingError(ErrorRecords.Argument("NoListener", null, "Give -Socket <path> or -Port <n> (or run with -Wait under systemd socket activation)."));
        }

        protected override void ProcessImage(string path) => _paths.Add(path);

        protected override void EndProcessing()
        {
            if (_paths.Count == 0) return;
            string socketPath = Socket == null ? null : ResolveNewPath(Socket);
            var address = Address ?? IPAddress.Loopback;
            string where = socketPath != null ? $"Unix socket '{socketPath}'" : PortGiven ? $"{address} port {Port}" : "the socket passed by socket activation";
            bool readOnly = ReadOnly || Snapshot != null;
            if (!ShouldProcess(string.Join(", ", _paths), $"Export over NBD on {where}{(readOnly ? " (read-only)" : " (writable)")}")) return;

            string current = _paths[0];
            NbdServer server;
            try
            {
                var exports = OpenExports();
                try
                {
                    var options = new NbdServerOptions { Certificate = Certificate, MaxConnections = MaxConnections };
                    server = socketPath != null ? NbdServer.ListenUnix(exports, socketPath, options)
                        : PortGiven ? NbdServer.ListenTcp(exports, address, Port, options)
                        : NbdServer.FromSocketActivation(exports, options)
                          ?? throw new QcowException(QcowErrorKind.InvalidArgument, null,
                              "LISTEN_FDS is set, but LISTEN_PID names neither this process nor a launcher it runs under: no socket was passed to this server");
                }
                catch
                {
                    foreach (var e in exports) e.Dispose();
                    throw;
                }
            }
            catch (QcowException e)
            {
                WriteError(ErrorRecords.From(e, current));
                return;
            }
            catch (IOException e)
            {
                WriteError(new ErrorRecord(e, "QcowPS.IOError", ErrorCategory.OpenError, current));
                return;
            }
            catch (UnauthorizedAccessException e)
            {
                WriteError(new ErrorRecord(e, "QcowPS.AccessDenied", ErrorCategory.PermissionDenied, current));
                return;
            }

            var entry = NbdServerRegistry.Add(server);
            WriteVerbose($"Serving {string.Join(", ", _paths)} at {server.Uri ?? where}");
            WriteObject(entry);
            if (Wait) ServeInForeground(entry);
        }

        /// <summary>The engine opens the images (and locks them as QEMU does); its errors name the file they are about.</summary>
        private List<NbdExport> OpenExports() => NbdExportSet.Open(_paths, Format, Snapshot, ReadOnly, ExportName);

        private void ServeInForeground(QcowNbdServer entry)
        {
            _foreground = entry.Server;
            try
            {
                if (_stopping) return;
                while (!entry.Server.WaitForStop(ForegroundPollMilliseconds))
                {
                    if (entry.Server.ActivatorGone)
                    {
                        WriteVerbose($"The process that started this server (LISTEN_PID {entry.Server.ActivatorProcessId}) has exited; stopping.");
                        break;
                    }
                }
            }
            finally
            {
                try { entry.Server.Stop(); }
                catch (QcowException e) { WriteError(ErrorRecords.From(e, entry.Paths.Length > 0 ? entry.Paths[0] : null)); }
                NbdServerRegistry.Remove(entry);
            }
        }

        /// <summary>Ctrl+C under -Wait: stop serving (drain, flush, close) and return.</summary>
        protected override void StopProcessing()
        {
            _stopping = true;
            var server = _foreground;
            if (server != null)
            {
                try { server.Stop(); } catch (QcowException) { /* reported by ServeInForeground */ }
            }
        }
    }
}
