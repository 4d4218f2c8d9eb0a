using System;

namespace QcowPS.Engine
{
    /// <summary>
    /// The formats by QEMU's names ("qcow2", "qed", "raw"): what images store as a backing format, and
    /// what a file name's extension says a destination is.
    /// </summary>
    public static class ImageFormats
    {
        /// <summary>QEMU's name of a format (what qemu-img -f / -F take); null for Auto.</summary>
        public static string QemuName(ImageFormat format)
        {
            switch (format)
            {
                case ImageFormat.Qcow2: return "qcow2";
                case ImageFormat.Qed: return "qed";
                case ImageFormat.Raw: return "raw";
                case ImageFormat.Nbd: return "nbd";
                default: return null;
            }
        }

        /// <summary>The format a file name's extension names (.qcow2, .qcow, .qed, .raw), or Auto when it names none.</summary>
        public static ImageFormat FromExtension(string path)
        {
            string extension = System.IO.Path.GetExtension(path ?? "");
            if (extension.Equals(".qcow2", StringComparison.OrdinalIgnoreCase) || extension.Equals(".qcow", StringComparison.OrdinalIgnoreCase)) return ImageFormat.Qcow2;
            if (extension.Equals(".qed", StringComparison.OrdinalIgnoreCase)) return ImageFormat.Qed;
            if (extension.Equals(".raw", StringComparison.OrdinalIgnoreCase)) return ImageFormat.Raw;
            return ImageFormat.Auto;
        }
    }
}
