using System.Management.Automation;
using QcowPS.Engine.Operations;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>Lists the entries of a metadata table: L1 (the default), L2, refcount table or refcount blocks.</summary>
    [Cmdlet(VerbsCommon.Get, "QcowTable", DefaultParameterSetName = PathSet)]
    [OutputType(typeof(QcowTableEntry))]
    public sealed class GetQcowTableCommand : ReadImageCmdlet
    {
        [Parameter(Position = 1)]
        public QcowTableKind Table { get; set; } = QcowTableKind.L1;

        /// <summary>L1 and RefcountTable: the entry; L2: the L1 index of the table; RefcountBlock: the refcount table index of the block.</summary>
        [Parameter]
        [ValidateRange(0, long.MaxValue)]
        public long? Index { get; set; }

        /// <summary>Skip entries that are zero.</summary>
        [Parameter]
        public SwitchParameter NonZero { get; set; }

        /// <summary>The L1 and L2 tables of this internal snapshot (ID or name) instead of the active ones.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(SnapshotNameCompleter))]
        public string Snapshot { get; set; }

        protected override void ProcessImage(string path)
        {
            using (var image = OpenQcow2(path))
            {
                var snapshot = Snapshot == null ? null : SnapshotSelector.ByIdOrName(image, Snapshot);
                foreach (var entry in ImageInspector.Table(image, Table, Index, NonZero, snapshot))
                {
                    if (Stopping) return;
                    WriteObject(entry);
                }
            }
        }
    }
}
