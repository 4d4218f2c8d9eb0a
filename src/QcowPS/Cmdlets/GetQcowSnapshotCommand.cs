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
    public sealed class GetQcowSnapshotCommand : ImageCmdlet
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
            var options = ReadOptions(ImageFormat.Qcow2);
            options.OpenBackingChain = false;
            using (var disk = DiskImage.Open(path, options))
            {
                var image = (Qcow2Image)disk;
                var patterns = Name?.Select(n => new WildcardPattern(n, WildcardOptions.IgnoreCase)).ToArray();
                foreach (var s in image.Snapshots)
                {
                    if (patterns != null && !patterns.Any(p => p.IsMatch(s.Name))) continue;
                    if (Id != null && !Id.Contains(s.Id)) continue;
                    WriteObject(ImageInspector.Describe(image, s));
                }
                // Asking for a name without wildcards that is not there is an error, as with Get-Item.
                if (Name != null)
                    foreach (var n in Name.Where(n => !WildcardPattern.ContainsWildcardCharacters(n) && !image.Snapshots.Any(s => s.Name == n)))
                        WriteError(SnapshotNotFound(path, $"name '{n}'"));
                if (Id != null)
                    foreach (var id in Id.Where(id => !image.Snapshots.Any(s => s.Id == id)))
                        WriteError(SnapshotNotFound(path, $"ID '{id}'"));
            }
        }

        private static ErrorRecord SnapshotNotFound(string path, string what) =>
            new ErrorRecord(new QcowException(QcowErrorKind.SnapshotNotFound, path, $"No snapshot with {what} in '{path}'"),
                "QcowPS.SnapshotNotFound", ErrorCategory.ObjectNotFound, path);
    }
}
