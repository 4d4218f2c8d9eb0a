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
    }
}
