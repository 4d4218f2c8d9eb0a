using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.Operations;

namespace QcowPS.Cmdlets
{
    /// <summary>Lists persistent dirty bitmaps (qemu-img info's bitmaps), or with -Extent their dirty and clean runs.</summary>
    [Cmdlet(VerbsCommon.Get, "QcowBitmap", DefaultParameterSetName = PathSet)]
    [OutputType(typeof(QcowBitmap), typeof(QcowBitmapExtent))]
    public sealed class GetQcowBitmapCommand : ReadImageCmdlet
    {
        [Parameter(Position = 1)]
        [SupportsWildcards]
        [ValidateNotNullOrEmpty]
        public string[] Name { get; set; }

        /// <summary>Emit each bitmap's dirty and clean runs (Offset, Length, Dirty), merged, instead of the bitmap.</summary>
        [Parameter]
        public SwitchParameter Extent { get; set; }

        protected override void ProcessImage(string path)
        {
            // Collect, close, then emit: Get-QcowBitmap | Remove-QcowBitmap opens the same image for writing.
            var found = new List<object>();
            var errors = new List<ErrorRecord>();
            using (var image = OpenQcow2(path))
            {
                var patterns = Name?.Select(n => new WildcardPattern(n)).ToArray();
                var bitmaps = image.Bitmaps;
                foreach (var b in bitmaps)
                {
                    if (patterns != null && !patterns.Any(p => p.IsMatch(b.Name))) continue;
                    if (!Extent) found.Add(BitmapInspector.Describe(image, b));
                    else
                    {
                        try { found.AddRange(image.GetBitmapExtents(b.Name)); }
                        catch (QcowException e) { errors.Add(Infrastructure.ErrorRecords.From(e, path)); }
                    }
                }
                if (Name != null)
                    foreach (var n in Name.Where(n => !WildcardPattern.ContainsWildcardCharacters(n) && !bitmaps.Any(b => b.Name == n)))
                        errors.Add(Infrastructure.ErrorRecords.From(new QcowException(QcowErrorKind.BitmapNotFound, path, $"No bitmap named '{n}' in '{path}'"), path));
            }
            foreach (var o in found) WriteObject(o);
            foreach (var e in errors) WriteError(e);
        }
    }
}
