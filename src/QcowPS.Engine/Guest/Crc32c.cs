namespace QcowPS.Engine.Guest
{
    /// <summary>
    /// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, initial value and final xor ~0), as XFS v5
    /// metadata stores it: computed over the whole structure with its own CRC field taken as zero,
    /// written little-endian.
    /// </summary>
    internal static class Crc32c
    {
        private static readonly uint[] Table = MakeTable();

        private static uint[] MakeTable()
        {
            var t = new uint[256];
            for (uint n = 0; n < 256; n++)
            {
                uint c = n;
                for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0x82F63B78u ^ (c >> 1) : c >> 1;
                t[n] = c;
            }
            return t;
        }

        public static uint Compute(byte[] data, int offset, int count) => Compute(data, offset, count, -1);

        /// <summary>The CRC of data[offset..offset+count) with the 4 bytes at crcField (an index into data; -1 for none) read as zeros.</summary>
        public static uint Compute(byte[] data, int offset, int count, int crcField)
        {
            uint c = 0xFFFFFFFFu;
            for (int i = offset; i < offset + count; i++)
            {
                byte b = crcField >= 0 && i >= crcField && i < crcField + 4 ? (byte)0 : data[i];
                c = Table[(c ^ b) & 0xFF] ^ (c >> 8);
            }
            return c ^ 0xFFFFFFFFu;
        }
    }
}
