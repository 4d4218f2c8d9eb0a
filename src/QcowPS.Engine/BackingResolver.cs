using System;
using System.Collections.Generic;
using System.IO;
using System.Text.RegularExpressions;

namespace QcowPS.Engine
{
    /// <summary>
    /// Turns a file name stored inside an image (backing file, external data file) into a local path:
    /// relative names are relative to the image that names them; QEMU's JSON and protocol names
    /// (json:{...}, nbd://, http://...) are refused, since an image must not make us open network
    /// connections or arbitrary files.
    /// </summary>
    public static class BackingResolver
    {
        private static readonly Regex WindowsDrive = new Regex(@"^[A-Za-z]:[\\/]", RegexOptions.CultureInvariant);

        public static string ResolveRelative(string imagePath, string name, string what)
        {
            if (string.IsNullOrEmpty(name))
                throw new QcowException(QcowErrorKind.Corrupt, imagePath, $"The {what} name in '{imagePath}' is empty");
            if (name.IndexOf('\0') >= 0)
                throw new QcowException(QcowErrorKind.Corrupt, imagePath, $"The {what} name in '{imagePath}' contains a NUL character");
            if (name.StartsWith("json:", StringComparison.Ordinal))
                throw new QcowException(QcowErrorKind.Unsupported, imagePath,
                    $"The {what} of '{imagePath}' is a QEMU JSON name ('{Shorten(name)}'); QcowPS opens only plain file names");
            string protocol = ProtocolOf(name);
            if (protocol != null)
            {
                if (protocol != "file")
                    throw new QcowException(QcowErrorKind.Unsupported, imagePath,
                        $"The {what} of '{imagePath}' uses the '{protocol}:' protocol ('{Shorten(name)}'); QcowPS opens only local files");
                name = name.Substring("file:".Length);
            }
            string directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(imagePath)) ?? ".";
            try
            {
                return System.IO.Path.GetFullPath(System.IO.Path.IsPathRooted(name) ? name : System.IO.Path.Combine(directory, name));
            }
            catch (Exception e) when (e is ArgumentException || e is NotSupportedException || e is PathTooLongException)
            {
                throw new QcowException(QcowErrorKind.Corrupt, imagePath, $"The {what} name '{Shorten(name)}' in '{imagePath}' is not a valid path: {e.Message}");
            }
        }

        /// <summary>QEMU treats a colon before the first slash as a protocol prefix (path_has_protocol).</summary>
        private static string ProtocolOf(string name)
        {
            if (WindowsDrive.IsMatch(name)) return null;
            int colon = name.IndexOf(':');
            if (colon <= 0) return null;
            int slash = name.IndexOfAny(new[] { '/', '\\' });
            if (slash >= 0 && slash < colon) return null;
            return name.Substring(0, colon);
        }

        private static string Shorten(string s) => s.Length <= 80 ? s : s.Substring(0, 77) + "...";

        /// <summary>Maps a stored format name to a format; null or empty means not recorded.</summary>
        public static ImageFormat ParseFormatName(string imagePath, string format)
        {
            if (string.IsNullOrEmpty(format)) return ImageFormat.Auto;
            switch (format)
            {
                case "qcow2": return ImageFormat.Qcow2;
                case "qed": return ImageFormat.Qed;
                case "raw":
                case "file": return ImageFormat.Raw;
                default:
                    throw new QcowException(QcowErrorKind.Unsupported, imagePath,
                        $"The backing file of '{imagePath}' has format '{Shorten(format)}', which QcowPS does not read (qcow2, qed and raw are supported)");
            }
        }
    }
}
