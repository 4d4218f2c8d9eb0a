using System.Globalization;

namespace QcowPS
{
    /// <summary>Human-readable sizes and offsets for the format views (QcowPS.format.ps1xml).</summary>
    public static class DisplayFormat
    {
        private static readonly string[] Units = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };

        public static string Size(object value)
        {
            if (value == null) return "";
            double bytes = System.Convert.ToDouble(value, CultureInfo.InvariantCulture);
            int unit = 0;
            while (bytes >= 1024 && unit < Units.Length - 1)
            {
                bytes /= 1024;
                unit++;
            }
            return unit == 0
                ? ((long)bytes).ToString(CultureInfo.InvariantCulture) + " B"
                : bytes.ToString(bytes >= 100 || bytes == System.Math.Floor(bytes) ? "0.#" : "0.##", CultureInfo.InvariantCulture) + " " + Units[unit];
        }

        /// <summary>
        /// An image's name for a table column: a file's name without its folder; an NBD URI as scheme,
        /// endpoint and export, a Unix socket by its file name, the TLS query parameters left out, so it
        /// fits beside the other columns in 120.
        /// </summary>
        public static string ImageName(string path)
        {
            if (string.IsNullOrEmpty(path)) return "";
            if (!Engine.Nbd.NbdUri.IsNbdUri(path)) return System.IO.Path.GetFileName(path);
            Engine.Nbd.NbdUri uri;
            try { uri = Engine.Nbd.NbdUri.Parse(path); }
            catch (Engine.QcowException) { return path; }
            return uri.IsUnix
                ? $"{uri.Scheme}:///{uri.ExportName}?socket={System.IO.Path.GetFileName(uri.Socket)}"
                : $"{uri.Scheme}://{uri.Endpoint}/{uri.ExportName}";
        }

        public static string Hex(object value)
        {
            if (value == null) return "";
            if (value is ulong u) return "0x" + u.ToString("X", CultureInfo.InvariantCulture);
            long v = System.Convert.ToInt64(value, CultureInfo.InvariantCulture);
            return "0x" + v.ToString("X", CultureInfo.InvariantCulture);
        }
    }
}
