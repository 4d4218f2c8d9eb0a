using System.Collections.Generic;
using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.Qcow2;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>Deletes internal snapshots, like qemu-img snapshot -d; -Name takes wildcards.</summary>
    /// <remarks>ConfirmImpact High: a deleted snapshot's clusters are freed at once and cannot be brought back.</remarks>
    [Cmdlet(VerbsCommon.Remove, "QcowSnapshot", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
    [OutputType(typeof(void))]
    public sealed class RemoveQcowSnapshotCommand : SnapshotCmdlet
    {
        protected override void ProcessImage(string path) =>
            Change(path, false, s => $"Delete snapshot '{s.Name}' (ID {s.Id})", (image, s) => image.DeleteSnapshot(s.Id));
    }
}
