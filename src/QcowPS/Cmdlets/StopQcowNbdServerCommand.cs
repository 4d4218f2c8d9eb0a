using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>Stops NBD servers of this session: drains in-flight requests, flushes, closes the images and releases their locks.</summary>
    [Cmdlet(VerbsLifecycle.Stop, "QcowNbdServer", DefaultParameterSetName = ServerSet, SupportsShouldProcess = true)]
    [OutputType(typeof(void))]
    public sealed class StopQcowNbdServerCommand : PSCmdlet
    {
        private const string ServerSet = "Server";
        private const string IdSet = "Id";

        [Parameter(Mandatory = true, Position = 0, ParameterSetName = ServerSet, ValueFromPipeline = true)]
        [ValidateNotNull]
        public QcowNbdServer[] InputObject { get; set; }

        [Parameter(Mandatory = true, ParameterSetName = IdSet, ValueFromPipelineByPropertyName = true)]
        public int[] Id { get; set; }

        protected override void ProcessRecord()
        {
            if (ParameterSetName == ServerSet)
            {
                foreach (var server in InputObject) Stop(server);
                return;
            }
            foreach (var id in Id)
            {
                var server = NbdServerRegistry.Find(id);
                if (server != null) Stop(server);
                else WriteError(ErrorRecords.Make("NbdServerNotFound", ErrorCategory.ObjectNotFound, id, $"No NBD server with Id {id} runs in this session."));
            }
        }

        private void Stop(QcowNbdServer server)
        {
            if (!ShouldProcess($"NBD server {server.Id} ({server.Uri})", "Stop")) return;
            try
            {
                server.Server.Stop();
            }
            catch (QcowException e)
            {
                WriteError(ErrorRecords.From(e, server.Paths.Length > 0 ? server.Paths[0] : (object)server));
            }
            finally
            {
                NbdServerRegistry.Remove(server);
            }
        }
    }
}
