namespace QcowPS.Engine.IO
{
    /// <summary>Big-endian field access for qcow2 structures (QED's little-endian fields use BitConverter).</summary>
    internal static class BigEndian
    {
        public static ushort U16(byte[] b, int o) => (ushort)((b[o] << 8) | b[o + 1]);

        public static uint U32(byte[] b, int o) =>
            ((uint)b[o] << 24) | ((uint)b[o + 1] << 16) | ((uint)b[o + 2] << 8) | b[o + 3];

        public static ulong U64(byte[] b, int o) => ((ulong)U32(b, o) << 32) | U32(b, o + 4);

        public static void Put16(byte[] b, int o, ushort v) { b[o] = (byte)(v >> 8); b[o + 1] = (byte)v; }

        public static void Put32(byte[] b, int o, uint v)
        {
            b[o] = (byte)(v >> 24); b[o + 1] = (byte)(v >> 16); b[o + 2] = (byte)(v >> 8); b[o + 3] = (byte)v;
        }

        public static void Put64(byte[] b, int o, ulong v) { Put32(b, o, (uint)(v >> 32)); Put32(b, o + 4, (uint)v); }
    }

}
