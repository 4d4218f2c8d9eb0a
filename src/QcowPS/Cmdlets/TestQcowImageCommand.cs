using System.Management.Automation;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Cmdlets
{
    /// <summary>Checks an image's consistency, like qemu-img check.</summary>
    [Cmdlet(VerbsDiagnostic.Test, "QcowImage", DefaultParameterSetName = PathSet)]
    [OutputType(typeof(bool), typeof(QcowCheckResult))]
    public sealed class TestQcowImageCommand : ReadImageCmdlet
    {
        /// <summary>The full report instead of $true/$false.</summary>
        [Parameter]
        public SwitchParameter Detailed { get; set; }

        protected override void ProcessImage(string path)
        {
            QcowCheckResult result;
            using (var image = OpenQcow2(path)) result = image.Check(Qcow2RepairMode.None);
            result.Path = path;
            if (Detailed) WriteObject(result);
            else WriteObject(result.IsConsistent && result.Leaks == 0);
        }
    }
}
