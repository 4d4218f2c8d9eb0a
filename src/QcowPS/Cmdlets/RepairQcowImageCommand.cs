using System.Management.Automation;
using QcowPS.Engine.Qcow2;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>Repairs an image, like qemu-img check -r leaks / -r all.</summary>
    [Cmdlet(VerbsDiagnostic.Repair, "QcowImage", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(QcowCheckResult))]
    public sealed class RepairQcowImageCommand : ImageCmdlet
    {
        /// <summary>Fix leaked clusters only (the default).</summary>
        [Parameter]
        public SwitchParameter Leaks { get; set; }

        /// <summary>Fix leaks and corruptions.</summary>
        [Parameter]
        public SwitchParameter All { get; set; }

        protected override void BeginProcessing()
        {
            base.BeginProcessing();
            if (Leaks && All)
                ThrowTerminatingError(ErrorRecords.Argument("ConflictingParameters", null, "Use -Leaks or -All, not both."));
        }

        protected override void ProcessImage(string path)
        {
            var mode = All ? Qcow2RepairMode.All : Qcow2RepairMode.Leaks;
            // First a read-only check: nothing is opened for writing when there is nothing to fix (or -WhatIf).
            QcowCheckResult found;
            var progress = new ProgressReporter(this, 6, $"Checking {System.IO.Path.GetFileName(path)}", "Walking the L1 and L2 tables");
            using (var image = OpenQcow2(path))
                found = image.Check(Qcow2RepairMode.None, progress.Report);
            progress.Complete();
            bool needed = found.Leaks > 0 || (mode == Qcow2RepairMode.All && (found.Corruptions > 0 || IsMarked(path)));
            if (!needed)
            {
                found.Path = path;
                WriteObject(found);
                return;
            }
            string what = mode == Qcow2RepairMode.All
                ? $"Repair {found.Corruptions} corruptions and {found.Leaks} leaks"
                : $"Repair {found.Leaks} leaked clusters";
            if (!ShouldProcess(path, what)) return;
            QcowCheckResult result;
            var repairing = new ProgressReporter(this, 6, $"Repairing {System.IO.Path.GetFileName(path)}", "Walking the L1 and L2 tables");
            using (var image = OpenQcow2(path, writable: true, allowCorrupt: true)) result = image.Check(mode, repairing.Report);
            repairing.Complete();
            result.Path = path;
            WriteObject(result);
        }

        /// <summary>A consistent image may still carry the corrupt or dirty mark, which -All clears.</summary>
        private bool IsMarked(string path)
        {
            using (var image = OpenQcow2(path)) return image.Header.IsCorrupt || image.Header.IsDirty;
        }
    }
}
