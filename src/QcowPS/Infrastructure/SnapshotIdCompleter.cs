using QcowPS.Engine.Qcow2;

namespace QcowPS.Infrastructure
{
    /// <summary>Snapshot IDs of the image on the command line (-Id).</summary>
    public sealed class SnapshotIdCompleter : SnapshotCompleter
    {
        protected override string ValueOf(Qcow2Snapshot snapshot) => snapshot.Id;

        protected override string TooltipOf(Qcow2Snapshot snapshot) => snapshot.Name;
    }
}
