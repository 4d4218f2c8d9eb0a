namespace QcowPS.Engine.Qcow2
{
    /// <summary>
    /// Decodes one L2 entry (spec: "Cluster mapping", "Extended L2 Entries"). For extended L2 the
    /// bitmap is the second 64 bits; for compressed clusters it is ignored.
    /// </summary>
    public readonly struct L2Entry
    {
        public const ulong CopiedFlag = 1UL << 63;
        public const ulong CompressedFlag = 1UL << 62;
        public const ulong ZeroFlag = 1UL;
        /// <summary>An extended L2 bitmap whose 32 "reads as zeros" bits are all set and allocation bits clear.</summary>
        public const ulong AllSubclustersZero = 0xFFFF_FFFFUL << 32;
        public const ulong OffsetMask = 0x00FF_FFFF_FFFF_FE00UL;
        /// <summary>Bits that must be zero in a standard descriptor (1-8 and 56-61).</summary>
        public const ulong StandardReservedMask = 0x3F00_0000_0000_01FEUL;

        public ulong Raw { get; }
        public ulong Bitmap { get; }
        private readonly int _clusterBits;
        private readonly bool _extended;
        private readonly bool _externalData;

        public L2Entry(ulong raw, ulong bitmap, int clusterBits, bool extendedL2, bool externalData)
        {
            Raw = raw;
            Bitmap = bitmap;
            _clusterBits = clusterBits;
            _extended = extendedL2;
            _externalData = externalData;
        }

        public bool IsCompressed => (Raw & CompressedFlag) != 0;
        public bool IsCopied => (Raw & CopiedFlag) != 0;

        /// <summary>Host cluster offset of a standard entry (0 when none).</summary>
        public long HostOffset => IsCompressed ? 0 : (long)(Raw & OffsetMask);

        /// <summary>Bit position where the compressed sector count starts: 62 - (cluster_bits - 8).</summary>
        public static int CompressedSizeShift(int clusterBits) => 62 - (clusterBits - 8);

        public long CompressedOffset
        {
            get
            {
                int shift = CompressedSizeShift(_clusterBits);
                return (long)(Raw & ((1UL << shift) - 1));
            }
        }

        /// <summary>Number of 512-byte sectors the compressed data touches (the additional ones + 1).</summary>
        public int CompressedSectors
        {
            get
            {
                int shift = CompressedSizeShift(_clusterBits);
                ulong mask = (1UL << (_clusterBits - 8)) - 1;
                return (int)((Raw >> shift) & mask) + 1;
            }
        }

        /// <summary>Bytes from the compressed offset to the end of its last sector (QEMU's csize).</summary>
        public int CompressedSize => CompressedSectors * 512 - (int)(CompressedOffset & 511);

        public ClusterType Type
        {
            get
            {
                if (IsCompressed) return ClusterType.Compressed;
                bool hasOffset = (Raw & OffsetMask) != 0 || (_externalData && IsCopied);
                if (!_extended && (Raw & ZeroFlag) != 0)
                    return hasOffset ? ClusterType.ZeroAllocated : ClusterType.Zero;
                return hasOffset ? ClusterType.Normal : ClusterType.Unallocated;
            }
        }

        /// <summary>Type of one subcluster of an extended entry (spec: subcluster allocation bitmap).</summary>
        public ClusterType SubclusterType(int index)
        {
            if (IsCompressed) return ClusterType.Compressed;
            if (!_extended) return Type;
            bool allocated = (Bitmap & (1UL << index)) != 0;
            bool zero = (Bitmap & (1UL << (index + 32))) != 0;
            if (allocated) return ClusterType.Normal;
            if (zero) return Type == ClusterType.Normal ? ClusterType.ZeroAllocated : ClusterType.Zero;
            return ClusterType.Unallocated;
        }

        public override string ToString() => _extended ? $"0x{Raw:X16}/0x{Bitmap:X16}" : $"0x{Raw:X16}";
    }
}
