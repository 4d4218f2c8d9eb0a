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
            if (IsNbdUri(path))
            {
                ProcessExport(path);
                return;
            }
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

        /// <summary>
        /// An NBD export: the bitmaps it offers as qemu:dirty-bitmap:NAME contexts (listed in the handshake),
        /// their runs from BLOCK_STATUS. What NBD does not carry (granularity, flags, table) stays empty.
        /// Runs are emitted as they arrive: nothing here opens the export for writing.
        /// </summary>
        private void ProcessExport(string uri)
        {
            var options = ReadOptions(ImageFormat.Auto);
            options.AllBitmaps = true;
            using (var disk = (Engine.Nbd.NbdDisk)OpenImage(uri, options))
            {
                var patterns = Name?.Select(n => new WildcardPattern(n)).ToArray();
                var names = disk.BitmapNames;
                foreach (var name in names)
                {
                    if (patterns != null && !patterns.Any(p => p.IsMatch(name))) continue;
                    if (Extent)
                        foreach (var run in disk.GetDirtyExtents(name)) WriteObject(run);
                    else WriteObject(BitmapInspector.Describe(disk, name));
                }
                if (Name != null)
                    foreach (var n in Name.Where(n => !WildcardPattern.ContainsWildcardCharacters(n) && !names.Contains(n)))
                        WriteError(Infrastructure.ErrorRecords.From(new QcowException(QcowErrorKind.BitmapNotFound, uri,
                            $"NBD export '{uri}' offers no bitmap named '{n}' (no qemu:dirty-bitmap:{n} context)"), uri));
            }
        }
    }
}
