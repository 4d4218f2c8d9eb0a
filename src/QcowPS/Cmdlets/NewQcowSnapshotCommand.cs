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
            using (OpenQcow2(path)) { }  // a missing or non-qcow2 file is an error even with -WhatIf
            if (!ShouldProcess(path, $"Create snapshot '{Name}'")) return;
            QcowSnapshot created;
            using (var image = OpenQcow2(path, writable: true))
                created = ImageInspector.Describe(image, image.CreateSnapshot(Name));
            WriteObject(created);
        }
    }
}
