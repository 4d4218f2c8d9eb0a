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

        public static string Hex(object value)
        {
            if (value == null) return "";
            if (value is ulong u) return "0x" + u.ToString("X", CultureInfo.InvariantCulture);
            long v = System.Convert.ToInt64(value, CultureInfo.InvariantCulture);
            return "0x" + v.ToString("X", CultureInfo.InvariantCulture);
        }
    }
}
