using QcowPS.Engine.Qcow2;

namespace QcowPS.Infrastructure
{
    /// <summary>Snapshot names of the image on the command line (-Name, -Snapshot).</summary>
    public sealed class SnapshotNameCompleter : SnapshotCompleter
    {
        protected override string ValueOf(Qcow2Snapshot snapshot) => snapshot.Name;

        protected override string TooltipOf(Qcow2Snapshot snapshot) => $"ID {snapshot.Id}, {snapshot.Date:u}";
    }
}
