using System.Collections.Generic;
using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.Operations;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>Lists internal snapshots, like qemu-img snapshot -l.</summary>
    [Cmdlet(VerbsCommon.Get, "QcowSnapshot", DefaultParameterSetName = PathSet)]
    [OutputType(typeof(QcowSnapshot))]
    public sealed class GetQcowSnapshotCommand : ReadImageCmdlet
    {
        [Parameter]
        [SupportsWildcards]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(SnapshotNameCompleter))]
        public string[] Name { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(SnapshotIdCompleter))]
        public string[] Id { get; set; }

        protected override void ProcessImage(string path)
        {
            // Collect, close, then emit: Get-QcowSnapshot | Remove-QcowSnapshot opens the same image for writing.
            var found = new List<QcowSnapshot>();
            var misses = new List<QcowException>();
            using (var image = OpenQcow2(path))
                foreach (var s in new SnapshotSelector(Name, Id).Select(image, misses.Add))
                    found.Add(ImageInspector.Describe(image, s));
            foreach (var s in found) WriteObject(s);
            foreach (var e in misses) WriteError(ErrorRecords.From(e, path));
        }
    }
}
