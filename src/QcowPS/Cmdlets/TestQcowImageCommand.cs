using System.Management.Automation;
using QcowPS.Engine.Qcow2;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>Checks an image's consistency, like qemu-img check.</summary>
    [Cmdlet(VerbsDiagnostic.Test, "QcowImage", DefaultParameterSetName = PathSet)]
    [OutputType(typeof(bool), typeof(QcowCheckResult))]
    public sealed class TestQcowImageCommand : ReadImageCmdlet
    {
        /// <summary>The full report instead of $true/$false (which is the report's IsClean).</summary>
        [Parameter]
        public SwitchParameter Detailed { get; set; }

        protected override void ProcessImage(string path)
        {
            QcowCheckResult result;
            var progress = new ProgressReporter(this, 5, $"Checking {System.IO.Path.GetFileName(path)}", "Walking the L1 and L2 tables");
            using (var image = OpenQcow2(path)) result = image.Check(Qcow2RepairMode.None, progress.Report);
            progress.Complete();
            result.Path = path;
            if (Detailed) WriteObject(result);
            else WriteObject(result.IsClean);
        }
    }
}
