using System.Linq;
using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.Operations;
using QcowPS.Engine.Qcow2;

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
        public string[] Name { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        public string[] Id { get; set; }

        protected override void ProcessImage(string path)
        {
            // Collect, close, then emit: Get-QcowSnapshot | Remove-QcowSnapshot opens the same image for writing.
            var found = new System.Collections.Generic.List<QcowSnapshot>();
            var errors = new System.Collections.Generic.List<ErrorRecord>();
            using (var image = OpenQcow2(path))
            {
                var patterns = Name?.Select(n => new WildcardPattern(n, WildcardOptions.IgnoreCase)).ToArray();
                foreach (var s in image.Snapshots)
                {
                    if (patterns != null && !patterns.Any(p => p.IsMatch(s.Name))) continue;
                    if (Id != null && !Id.Contains(s.Id)) continue;
                    found.Add(ImageInspector.Describe(image, s));
                }
                // Asking for a name without wildcards that is not there is an error, as with Get-Item.
                if (Name != null)
                    foreach (var n in Name.Where(n => !WildcardPattern.ContainsWildcardCharacters(n) && !image.Snapshots.Any(s => string.Equals(s.Name, n, System.StringComparison.OrdinalIgnoreCase))))
                        errors.Add(SnapshotNotFound(path, $"name '{n}'"));
                if (Id != null)
                    foreach (var id in Id.Where(id => !image.Snapshots.Any(s => s.Id == id)))
                        errors.Add(SnapshotNotFound(path, $"ID '{id}'"));
            }
            foreach (var s in found) WriteObject(s);
            foreach (var e in errors) WriteError(e);
        }

        private static ErrorRecord SnapshotNotFound(string path, string what) =>
            new ErrorRecord(new QcowException(QcowErrorKind.SnapshotNotFound, path, $"No snapshot with {what} in '{path}'"),
                "QcowPS.SnapshotNotFound", ErrorCategory.ObjectNotFound, path);
    }
}
