using System.Management.Automation;
using QcowPS.Engine.Operations;

namespace QcowPS.Cmdlets
{
    /// <summary>Takes an internal snapshot, like qemu-img snapshot -c.</summary>
    [Cmdlet(VerbsCommon.New, "QcowSnapshot", DefaultParameterSetName = PathSet, SupportsShouldProcess = true)]
    [OutputType(typeof(QcowSnapshot))]
    public sealed class NewQcowSnapshotCommand : ImageCmdlet
    {
        [Parameter(Mandatory = true, Position = 1)]
        [ValidateNotNullOrEmpty]
        public string Name { get; set; }

        protected override void ProcessImage(string path)
        {
            if (!ShouldProcess(path, $"Create snapshot '{Name}'")) return;
            using (var image = OpenQcow2(path, writable: true))
            {
                var snapshot = image.CreateSnapshot(Name);
                WriteObject(ImageInspector.Describe(image, snapshot));
            }
        }
    }
}
