using System.Management.Automation;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>Lists the NBD servers this session started.</summary>
    [Cmdlet(VerbsCommon.Get, "QcowNbdServer")]
    [OutputType(typeof(QcowNbdServer))]
    public sealed class GetQcowNbdServerCommand : PSCmdlet
    {
        [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
        public int[] Id { get; set; }

        protected override void ProcessRecord()
        {
            if (Id == null)
            {
                foreach (var s in NbdServerRegistry.All()) WriteObject(s);
                return;
            }
            foreach (var id in Id)
            {
                var s = NbdServerRegistry.Find(id);
                if (s != null) WriteObject(s);
                else WriteError(ErrorRecords.Make("NbdServerNotFound", ErrorCategory.ObjectNotFound, id, $"No NBD server with Id {id} runs in this session."));
            }
        }
    }
}
