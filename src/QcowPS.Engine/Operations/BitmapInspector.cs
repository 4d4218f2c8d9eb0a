using QcowPS.Engine.Nbd;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine.Operations
{
    /// <summary>Turns an image's persistent bitmaps into output objects (Get-QcowBitmap, New-QcowBitmap).</summary>
    public static class BitmapInspector
    {
        public static QcowBitmap Describe(Qcow2Image image, Qcow2Bitmap bitmap) => new QcowBitmap
        {
            Path = image.Path,
            Name = bitmap.Name,
            Granularity = bitmap.Granularity,
            Enabled = bitmap.Enabled,
            InUse = bitmap.InUse,
            DirtyBytes = image.GetBitmapDirtyBytes(bitmap.Name),
            TableOffset = bitmap.TableOffset,
            TableSize = bitmap.TableSize,
            Unusable = bitmap.Unusable,
        };

        /// <summary>
        /// A bitmap an NBD export offers: its name and the bytes it marks dirty (summed from its runs).
        /// Granularity, flags and table are not carried by NBD, so they stay null rather than guessed.
        /// </summary>
        public static QcowBitmap Describe(NbdDisk disk, string name)
        {
            long dirty = 0;
            foreach (var run in disk.GetDirtyExtents(name)) if (run.Dirty) dirty += run.Length;
            return new QcowBitmap { Path = disk.Path, Name = name, DirtyBytes = dirty };
        }
    }
}
