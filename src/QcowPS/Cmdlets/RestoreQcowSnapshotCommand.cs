using System.Collections.Generic;
using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.Qcow2;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>Reverts the disk to an internal snapshot, like qemu-img snapshot -a.</summary>
    [Cmdlet(VerbsData.Restore, "QcowSnapshot", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
    [OutputType(typeof(void))]
    public sealed class RestoreQcowSnapshotCommand : SnapshotCmdlet
    {
        protected override void ProcessImage(string path) =>
            Change(path, true, s => $"Revert the disk to snapshot '{s.Name}' (ID {s.Id}), discarding changes made since", (image, s) => image.ApplySnapshot(s.Id));
    }
}
