using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.Operations;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Cmdlets
{
    /// <summary>Lists the entries of a metadata table: L1, L2, refcount table or refcount blocks.</summary>
    [Cmdlet(VerbsCommon.Get, "QcowTable", DefaultParameterSetName = PathSet)]
    [OutputType(typeof(QcowTableEntry))]
    public sealed class GetQcowTableCommand : ReadImageCmdlet
    {
        [Parameter(Mandatory = true, Position = 1)]
        public QcowTableKind Table { get; set; }

        /// <summary>L1 and RefcountTable: the entry; L2: the L1 index of the table; RefcountBlock: the refcount table index of the block.</summary>
        [Parameter]
        [ValidateRange(0, long.MaxValue)]
        public long? Index { get; set; }

        /// <summary>Skip entries that are zero.</summary>
        [Parameter]
        public SwitchParameter NonZero { get; set; }

        protected override void ProcessImage(string path)
        {
            using (var disk = OpenQcow2(path))
            {
                foreach (var entry in ImageInspector.Table((Qcow2Image)disk, Table, Index, NonZero))
                {
                    if (Stopping) return;
                    WriteObject(entry);
                }
            }
        }
    }
}
