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
    /// <summary>Exports images over NBD, like qemu-nbd: in the background of the session, or in the foreground with -Wait.</summary>
    [Cmdlet(VerbsLifecycle.Start, "QcowNbdServer", DefaultParameterSetName = PathSet, SupportsShouldProcess = true)]
    [OutputType(typeof(QcowNbdServer))]
    public sealed class StartQcowNbdServerCommand : ImageCmdlet
    {
        [Parameter]
        public ImageFormat Format { get; set; } = ImageFormat.Auto;

        /// <summary>Export an internal snapshot (read-only), like qemu-nbd -l.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string Snapshot { get; set; }

        [Parameter]
        public SwitchParameter ReadOnly { get; set; }

        /// <summary>Listen on a new Unix socket at this path.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string Socket { get; set; }

        /// <summary>Listen on TCP (0: any free port).</summary>
        [Parameter]
        [ValidateRange(0, 65535)]
        public int Port { get; set; } = -1;

        /// <summary>The TCP address; loopback unless given.</summary>
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
        private NbdServer _foreground;

        protected override void ProcessImage(string path) => _paths.Add(path);

        protected override void EndProcessing()
        {
            if (_paths.Count == 0) return;
            if (Socket != null && Port >= 0)
                ThrowTerminatingError(ErrorRecords.Argument("ConflictingParameters", null, "-Socket and -Port cannot be used together."));
            if (Address != null && Port < 0)
                ThrowTerminatingError(ErrorRecords.Argument("ConflictingParameters", Address, "-Address needs -Port."));
            if (Certificate != null && !Certificate.HasPrivateKey)
                ThrowTerminatingError(ErrorRecords.Argument("CertificateWithoutKey", Certificate.Subject, $"The certificate '{Certificate.Subject}' has no private key; a TLS server needs it."));
            bool activated = Wait && Environment.GetEnvironmentVariable("LISTEN_FDS") != null;
            if (Socket == null && Port < 0 && !activated)
                ThrowTerminatingError(ErrorRecords.Argument("NoListener", null, "Give -Socket <path> or -Port <n> (or run with -Wait under socket activation)."));
            string socketPath = Socket == null ? null : ResolveNewPath(Socket);
            string where = socketPath ?? (Port >= 0 ? $"{Address ?? IPAddress.Loopback}:{Port}" : "the activated socket");
            if (!ShouldProcess(string.Join(", ", _paths), $"Export over NBD on {where}{(ReadOnly || Snapshot != null ? " (read-only)" : " (writable)")}")) return;

            try
            {
                var exports = NbdExportSet.Open(_paths, Format, Snapshot, ReadOnly, ExportName);
                var options = new NbdServerOptions { Certificate = Certificate, MaxConnections = MaxConnections };
                NbdServer server;
                try
                {
                    server = activated && socketPath == null && Port < 0 ? NbdServer.FromSocketActivation(exports, options)
                        : socketPath != null ? NbdServer.ListenUnix(exports, socketPath, options)
                        : NbdServer.ListenTcp(exports, Address ?? IPAddress.Loopback, Port, options);
                    if (server == null)
                        throw new QcowException(QcowErrorKind.InvalidArgument, "LISTEN_FDS is set, but LISTEN_PID names neither this process nor its parent: no socket was passed to this server");
                }
                catch
                {
                    foreach (var e in exports) e.Dispose();
                    throw;
                }
                var entry = NbdServerRegistry.Add(server);
                WriteObject(entry);
                if (!Wait) return;
                _foreground = server;
                try
                {
                    while (!server.WaitForStop(250)) { }
                }
                finally
                {
                    server.Stop();
                    NbdServerRegistry.Remove(entry);
                }
            }
            catch (QcowException e)
            {
                ThrowTerminatingError(ErrorRecords.From(e, _paths[0]));
            }
            catch (IOException e)
            {
                ThrowTerminatingError(new ErrorRecord(e, "QcowPS.IOError", ErrorCategory.OpenError, _paths[0]));
            }
        }

        /// <summary>Ctrl+C under -Wait: stop serving (drain, flush, close) and return.</summary>
        protected override void StopProcessing() => _foreground?.Stop();
    }
}
