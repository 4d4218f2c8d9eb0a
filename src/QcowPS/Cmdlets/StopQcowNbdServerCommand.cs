using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>Stops NBD servers of this session: drains in-flight requests, flushes, closes the images and releases their locks.</summary>
    [Cmdlet(VerbsLifecycle.Stop, "QcowNbdServer", DefaultParameterSetName = "Server", SupportsShouldProcess = true)]
    public sealed class StopQcowNbdServerCommand : PSCmdlet
    {
        [Parameter(Mandatory = true, Position = 0, ParameterSetName = "Server", ValueFromPipeline = true)]
        public QcowNbdServer[] InputObject { get; set; }

        [Parameter(Mandatory = true, ParameterSetName = "Id", ValueFromPipelineByPropertyName = true)]
        public int[] Id { get; set; }

        protected override void ProcessRecord()
        {
            if (InputObject != null)
            {
                foreach (var s in InputObject) Stop(s);
                return;
            }
            foreach (var id in Id)
            {
                var s = NbdServerRegistry.Find(id);
                if (s != null) Stop(s);
                else WriteError(ErrorRecords.Make("NbdServerNotFound", ErrorCategory.ObjectNotFound, id, $"No NBD server with Id {id} runs in this session."));
            }
        }

        private void Stop(QcowNbdServer server)
        {
            if (!ShouldProcess(server.Uri, "Stop NBD server")) return;
            try
            {
                server.Server.Stop();
            }
            catch (QcowException e)
            {
                WriteError(ErrorRecords.From(e, server));
            }
            finally
            {
                NbdServerRegistry.Remove(server);
            }
        }
    }
}
