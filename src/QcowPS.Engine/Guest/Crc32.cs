namespace QcowPS.Engine.Guest
{
    /// <summary>
    /// Reflected, table-driven CRC-32 with initial value and final xor ~0, in the two polynomials the
    /// guest structures use: IEEE 802.3 (zlib's; GPT headers and entry arrays) and Castagnoli (CRC-32C;
    /// XFS v5 metadata, written little-endian).
    /// </summary>
    internal sealed class Crc32
    {
        public static readonly Crc32 Ieee = new Crc32(0xEDB88320u);
        public static readonly Crc32 Castagnoli = new Crc32(0x82F63B78u);

        private readonly uint[] _table = new uint[256];

        private Crc32(uint reflectedPolynomial)
        {
            for (uint n = 0; n < 256; n++)
            {
                uint c = n;
                for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? reflectedPolynomial ^ (c >> 1) : c >> 1;
                _table[n] = c;
            }
        }

        /// <summary>
        /// The CRC of data[offset..offset+count) with the 4 bytes at crcField (an index into data; -1 for
        /// none) read as zeros: how a structure that stores its own CRC inside itself is checked and signed.
        /// </summary>
        public uint Compute(byte[] data, int offset, int count, int crcField = -1)
        {
            uint c = 0xFFFFFFFFu;
            for (int i = offset; i < offset + count; i++)
            {
                byte b = crcField >= 0 && i >= crcField && i < crcField + 4 ? (byte)0 : data[i];
                c = _table[(c ^ b) & 0xFF] ^ (c >> 8);
            }
            return c ^ 0xFFFFFFFFu;
        }
    }
}
