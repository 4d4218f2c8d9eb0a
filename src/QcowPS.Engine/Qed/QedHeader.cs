using System.Text;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qed
{
    /// <summary>The QED header (qed-spec.txt), little-endian, every field checked.</summary>
    public sealed class QedHeader
    {
        public const uint Magic = 0x00444551;  // "QED\0"
        public const int Size = 64;
        public const ulong FeatureBackingFile = 1;
        public const ulong FeatureNeedCheck = 2;
        public const ulong FeatureBackingFormatNoProbe = 4;
        public const ulong KnownFeatures = 7;

        public uint ClusterSize { get; private set; }
        public uint TableSize { get; private set; }
        public uint HeaderSize { get; private set; }
        public ulong Features { get; private set; }
        public ulong CompatFeatures { get; private set; }
        public ulong AutoclearFeatures { get; private set; }
        public ulong L1TableOffset { get; private set; }
        public ulong ImageSize { get; private set; }
        public string BackingFile { get; private set; }
        public bool BackingIsRaw => (Features & FeatureBackingFormatNoProbe) != 0;
        public bool NeedsCheck => (Features & FeatureNeedCheck) != 0;
        public long TableBytes => (long)TableSize * ClusterSize;
        public long TableEntries => TableBytes / 8;

        public static bool HasMagic(byte[] b, int count) => count >= 4 && LittleEndian.U32(b, 0) == Magic;

        private static bool IsPowerOfTwo(ulong v) => v != 0 && (v & (v - 1)) == 0;

        public static QedHeader Read(IHostFile file)
        {
            string path = file.Path;
            if (file.Length < Size)
                throw QcowException.Corrupt(path, $"Truncated QED header: the file has {file.Length} bytes, the header needs {Size}");
            var b = new byte[Size];
            file.ReadExactly(0, b, 0, Size, "QED header");
            if (LittleEndian.U32(b, 0) != Magic)
                throw QcowException.Corrupt(path, "Not a QED image: bad magic");
            var h = new QedHeader
            {
                ClusterSize = LittleEndian.U32(b, 4),
                TableSize = LittleEndian.U32(b, 8),
                HeaderSize = LittleEndian.U32(b, 12),
                Features = LittleEndian.U64(b, 16),
                CompatFeatures = LittleEndian.U64(b, 24),
                AutoclearFeatures = LittleEndian.U64(b, 32),
                L1TableOffset = LittleEndian.U64(b, 40),
                ImageSize = LittleEndian.U64(b, 48),
            };
            if (!IsPowerOfTwo(h.ClusterSize) || h.ClusterSize < 4096 || h.ClusterSize > (1u << 26))
                throw QcowException.Corrupt(path, $"QED cluster size {h.ClusterSize} is not a power of two from 4 KiB to 64 MiB");
            if (!IsPowerOfTwo(h.TableSize) || h.TableSize > 16)
                throw QcowException.Corrupt(path, $"QED table size {h.TableSize} is not a power of two from 1 to 16");
            if (h.HeaderSize == 0 || (ulong)h.HeaderSize * h.ClusterSize > (ulong)file.Length)
                throw QcowException.Corrupt(path, $"QED header size of {h.HeaderSize} clusters does not fit the file");
            if ((h.Features & ~KnownFeatures) != 0)
                throw QcowException.Unsupported(path, $"Unsupported QED feature bits 0x{h.Features & ~KnownFeatures:X}");
            if (h.ImageSize % 512 != 0)
                throw QcowException.Corrupt(path, $"QED image size {h.ImageSize} is not a multiple of 512");
            ulong entries = (ulong)h.TableEntries;
            ulong max = entries * entries * h.ClusterSize;  // at most 2^(3*30) would overflow: bound by entries <= 2^27
            if (entries < (1UL << 21) && h.ImageSize > max)
                throw QcowException.Corrupt(path, $"QED image size {h.ImageSize} is larger than its tables can map ({max})");
            if (h.ImageSize > (ulong)Qcow2.Qcow2Header.MaxVirtualSize)
                throw QcowException.Corrupt(path, $"QED image size {h.ImageSize} is too large");
            if (h.L1TableOffset == 0 || h.L1TableOffset % h.ClusterSize != 0 ||
                h.L1TableOffset > (ulong)file.Length || (ulong)h.TableBytes > (ulong)file.Length - h.L1TableOffset)
                throw QcowException.Corrupt(path, $"QED L1 table offset 0x{h.L1TableOffset:X} is unaligned or runs past the end of the file");
            if ((h.Features & FeatureBackingFile) != 0)
            {
                uint offset = LittleEndian.U32(b, 56), size = LittleEndian.U32(b, 60);
                ulong limit = (ulong)h.HeaderSize * h.ClusterSize;
                if (size > 1023 || (ulong)offset + size > limit)
                    throw QcowException.Corrupt(path, $"QED backing file name ({size} bytes at {offset}) lies outside the header or is too long");
                var name = new byte[size];
                file.ReadExactly(offset, name, 0, (int)size, "QED backing file name");
                h.BackingFile = Encoding.UTF8.GetString(name);
            }
            return h;
        }
    }
}
