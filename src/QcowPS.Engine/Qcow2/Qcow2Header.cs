using System;
using System.Collections.Generic;
using System.Linq;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    /// <summary>
    /// The qcow2 header and its extensions (spec: "Header", "Header extensions"), parsed with every
    /// field checked against the file and the spec's limits, and serializable for rewriting. Where each
    /// field lies: Qcow2HeaderLayout; reading: Qcow2Header.Read.cs; writing: Qcow2Header.Write.cs.
    /// </summary>
    public sealed partial class Qcow2Header
    {
        public const uint Magic = 0x514649FB;  // "QFI\xfb"
        public const int V2HeaderLength = Qcow2HeaderLayout.V2End;
        public const int V3HeaderLength = Qcow2HeaderLayout.V3End;
        public const int MinClusterBits = 9;
        public const int MaxClusterBits = 21;
        public const int MaxBackingFileNameLength = 1023;
        public const long MaxL1Bytes = 32L * 1024 * 1024;          // QCOW_MAX_L1_SIZE
        public const long MaxRefcountTableBytes = 8L * 1024 * 1024;  // QCOW_MAX_REFTABLE_SIZE
        public const int MaxSnapshots = 65536;
        public const long MaxSnapshotTableBytes = 64L * 1024 * 1024;
        public const long MaxVirtualSize = long.MaxValue - (1L << 30) + 1;  // QEMU's BDRV_MAX_LENGTH
        public const ulong KnownIncompatibleMask = 0x1F;

        public int Version { get; set; }
        public ulong BackingFileOffset { get; set; }
        public uint BackingFileSize { get; set; }
        public int ClusterBits { get; set; }
        public ulong Size { get; set; }
        public uint CryptMethod { get; set; }
        public uint L1Size { get; set; }
        public ulong L1TableOffset { get; set; }
        public ulong RefcountTableOffset { get; set; }
        public uint RefcountTableClusters { get; set; }
        public uint SnapshotCount { get; set; }
        public ulong SnapshotsOffset { get; set; }
        public ulong IncompatibleFeatures { get; set; }
        public ulong CompatibleFeatures { get; set; }
        public ulong AutoclearFeatures { get; set; }
        public int RefcountOrder { get; set; } = 4;
        public uint HeaderLength { get; set; }
        public Qcow2CompressionType CompressionType { get; set; }
        /// <summary>Header bytes past the fields we know (v3, header_length &gt; 112), kept verbatim.</summary>
        public byte[] ExtraHeaderFields { get; set; } = Array.Empty<byte>();

        public string BackingFile { get; set; }
        public string BackingFormat { get; set; }
        public string DataFile { get; set; }
        public List<Qcow2FeatureName> FeatureNames { get; } = new List<Qcow2FeatureName>();
        public List<Qcow2HeaderExtension> Extensions { get; } = new List<Qcow2HeaderExtension>();
        public ulong EncryptionHeaderOffset { get; set; }
        public ulong EncryptionHeaderLength { get; set; }
        public uint BitmapCount { get; set; }
        public ulong BitmapDirectorySize { get; set; }
        public ulong BitmapDirectoryOffset { get; set; }

        public int ClusterSize => 1 << ClusterBits;
        public int RefcountBits => 1 << RefcountOrder;
        public bool HasExtendedL2 => (IncompatibleFeatures & (ulong)Qcow2IncompatibleFeatures.ExtendedL2) != 0;
        public bool HasExternalDataFile => (IncompatibleFeatures & (ulong)Qcow2IncompatibleFeatures.ExternalDataFile) != 0;
        public bool IsDirty => (IncompatibleFeatures & (ulong)Qcow2IncompatibleFeatures.Dirty) != 0;
        public bool IsCorrupt => (IncompatibleFeatures & (ulong)Qcow2IncompatibleFeatures.Corrupt) != 0;
        public bool LazyRefcounts => (CompatibleFeatures & (ulong)Qcow2CompatibleFeatures.LazyRefcounts) != 0;
        public bool RawExternalData => (AutoclearFeatures & (ulong)Qcow2AutoclearFeatures.RawExternalData) != 0;
        public int L2EntrySize => HasExtendedL2 ? 16 : 8;
        public int L2Entries => ClusterSize / L2EntrySize;
        public bool IsEncrypted => CryptMethod != 0;

        /// <summary>Guest bytes one L1 entry covers.</summary>
        public long BytesPerL2Table => (long)L2Entries << ClusterBits;

        /// <summary>The number of L1 entries a virtual size needs (QEMU's size_to_l1).</summary>
        public static ulong L1EntriesFor(ulong size, int clusterBits, bool extendedL2)
        {
            int l2Bits = clusterBits - (extendedL2 ? 4 : 3);
            int shift = clusterBits + l2Bits;
            if (shift >= 64) return size == 0 ? 0UL : 1UL;
            ulong per = 1UL << shift;
            return size / per + (size % per != 0 ? 1UL : 0UL);
        }

        public static bool HasMagic(byte[] buffer, int count) => count >= 4 && BigEndian.U32(buffer, Qcow2HeaderLayout.Magic) == Magic;

        /// <summary>Names an incompatible/compatible/autoclear bit from the image's own table where it has one.</summary>
        public string FeatureName(int type, int bit)
        {
            var named = FeatureNames.FirstOrDefault(f => f.Type == type && f.Bit == bit);
            if (named != null && !string.IsNullOrEmpty(named.Name)) return named.Name;
            if (type == 0)
            {
                switch (bit)
                {
                    case 0: return "dirty bit";
                    case 1: return "corrupt bit";
                    case 2: return "external data file";
                    case 3: return "compression type";
                    case 4: return "extended L2 entries";
                }
            }
            if (type == 1 && bit == 0) return "lazy refcounts";
            if (type == 2 && bit == 0) return "bitmaps";
            if (type == 2 && bit == 1) return "raw external data";
            return null;
        }

        public static string[] FeatureList(ulong bits, Func<int, string> name)
        {
            var list = new List<string>();
            for (int bit = 0; bit < 64; bit++)
                if ((bits & (1UL << bit)) != 0) list.Add(name(bit) ?? $"bit {bit}");
            return list.ToArray();
        }
    }
}
