using System.Linq;
using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.Qcow2;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>Shared by Remove- and Restore-QcowSnapshot: the snapshot by -Name or -Id, from the pipeline too.</summary>
    public abstract class SnapshotCmdlet : ImageCmdlet
    {
        protected const string ByName = "Name";

        [Parameter(Position = 1, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string Name { get; set; }

        /// <summary>The snapshot ID (preferred over -Name when both arrive from Get-QcowSnapshot).</summary>
        [Parameter(ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string Id { get; set; }

        /// <summary>The snapshot -Id (or else -Name) selects, or a SnapshotNotFound error.</summary>
        protected Qcow2Snapshot Select(Qcow2Image image)
        {
            var s = Id != null ? image.Snapshots.FirstOrDefault(x => x.Id == Id) : image.Snapshots.FirstOrDefault(x => x.Name == Name);
            if (s == null)
                throw new QcowException(QcowErrorKind.SnapshotNotFound, image.Path,
                    $"No snapshot with {(Id != null ? $"ID '{Id}'" : $"name '{Name}'")} in '{image.Path}'");
            return s;
        }

        /// <summary>
        /// Finds the snapshot on a read-only open, asks ShouldProcess, and only then opens the image for
        /// writing (a writable open may repair a dirty image, which -WhatIf must not do).
        /// </summary>
        protected void Change(string path, System.Func<Qcow2Snapshot, string> describe, System.Action<Qcow2Image, Qcow2Snapshot> change)
        {
            if (Id == null && Name == null)
                ThrowTerminatingError(ErrorRecords.Argument("SnapshotNotSpecified", path, "Give the snapshot with -Name or -Id (or pipe it from Get-QcowSnapshot)."));
            Qcow2Snapshot target;
            using (var image = OpenQcow2(path)) target = Select(image);
            if (!ShouldProcess(path, describe(target))) return;
            using (var image = OpenQcow2(path, writable: true)) change(image, Select(image));
        }
    }

    /// <summary>Deletes an internal snapshot, like qemu-img snapshot -d.</summary>
    [Cmdlet(VerbsCommon.Remove, "QcowSnapshot", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(void))]
    public sealed class RemoveQcowSnapshotCommand : SnapshotCmdlet
    {
        protected override void ProcessImage(string path) =>
            Change(path, s => $"Delete snapshot '{s.Name}' (ID {s.Id})", (image, s) => image.DeleteSnapshot(s.Id));
    }

    /// <summary>Reverts the disk to an internal snapshot, like qemu-img snapshot -a.</summary>
    [Cmdlet(VerbsData.Restore, "QcowSnapshot", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
    [OutputType(typeof(void))]
    public sealed class RestoreQcowSnapshotCommand : SnapshotCmdlet
    {
        protected override void ProcessImage(string path) =>
            Change(path, s => $"Revert the disk to snapshot '{s.Name}' (ID {s.Id}), discarding changes made since", (image, s) => image.ApplySnapshot(s.Id));
    }
}
