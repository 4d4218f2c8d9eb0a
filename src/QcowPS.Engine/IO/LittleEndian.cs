namespace QcowPS.Engine.IO
{
    internal static class LittleEndian
    {
        public static uint U32(byte[] b, int o) =>
            b[o] | ((uint)b[o + 1] << 8) | ((uint)b[o + 2] << 16) | ((uint)b[o + 3] << 24);

        public static ulong U64(byte[] b, int o) => U32(b, o) | ((ulong)U32(b, o + 4) << 32);

        public static void Put32(byte[] b, int o, uint v)
        {
            b[o] = (byte)v; b[o + 1] = (byte)(v >> 8); b[o + 2] = (byte)(v >> 16); b[o + 3] = (byte)(v >> 24);
        }

        public static void Put64(byte[] b, int o, ulong v) { Put32(b, o, (uint)v); Put32(b, o + 4, (uint)(v >> 32)); }
    }
}
