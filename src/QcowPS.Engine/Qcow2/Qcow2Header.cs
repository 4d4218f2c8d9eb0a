using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    [Flags]
    public enum Qcow2IncompatibleFeatures : ulong
    {
        None = 0,
        Dirty = 1,
        Corrupt = 2,
        ExternalDataFile = 4,
        CompressionType = 8,
        ExtendedL2 = 16,
    }

    [Flags]
    public enum Qcow2CompatibleFeatures : ulong
    {
        None = 0,
        LazyRefcounts = 1,
    }

    [Flags]
    public enum Qcow2AutoclearFeatures : ulong
    {
        None = 0,
        Bitmaps = 1,
        RawExternalData = 2,
    }

    public enum Qcow2CompressionType : byte
    {
        Zlib = 0,
        Zstd = 1,
    }

    /// <summary>One entry of the feature name table extension.</summary>
    public sealed class Qcow2FeatureName
    {
        public int Type { get; set; }   // 0 incompatible, 1 compatible, 2 autoclear
        public int Bit { get; set; }
        public string Name { get; set; }
        public override string ToString() => $"{(Type == 0 ? "incompatible" : Type == 1 ? "compatible" : "autoclear")} bit {Bit}: {Name}";
    }

    /// <summary>A header extension as stored, with its data kept for rewriting.</summary>
    public sealed class Qcow2HeaderExtension
    {
        public const uint End = 0;
        public const uint BackingFormat = 0xE2792ACA;
        public const uint FeatureNameTable = 0x6803F857;
        public const uint Bitmaps = 0x23852875;
        public const uint FullDiskEncryption = 0x0537BE77;
        public const uint ExternalDataFile = 0x44415441;

        public uint Type { get; set; }
        public byte[] Data { get; set; }
        /// <summary>Where the extension header starts in the file.</summary>
        public long Offset { get; set; }

        public string Name
        {
            get
            {
                switch (Type)
                {
                    case BackingFormat: return "BackingFormat";
                    case FeatureNameTable: return "FeatureNameTable";
                    case Bitmaps: return "Bitmaps";
                    case FullDiskEncryption: return "FullDiskEncryption";
                    case ExternalDataFile: return "ExternalDataFile";
                    default: return $"Unknown(0x{Type:X8})";
                }
            }
        }

        public override string ToString() => $"{Name} ({Data.Length} bytes)";
    }

    /// <summary>
    /// The qcow2 header and its extensions (spec: "Header", "Header extensions"), parsed with every
    /// field checked against the file and the spec's limits, and serializable for rewriting.
    /// </summary>
    public sealed class Qcow2Header
    {
        public const uint Magic = 0x514649FB;  // "QFI\xfb"
        public const int V2HeaderLength = 72;
        public const int V3HeaderLength = 104;
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

        public static bool HasMagic(byte[] buffer, int count) => count >= 4 && BigEndian.U32(buffer, 0) == Magic;

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

        /// <summary>Reads and validates the header of an open file.</summary>
        public static Qcow2Header Read(IHostFile file)
        {
            string path = file.Path;
            long fileLength = file.Length;
            if (fileLength < V2HeaderLength)
                throw QcowException.Corrupt(path, $"Truncated qcow2 header: the file has {fileLength} bytes, the header needs at least {V2HeaderLength}");

            // The header, its extensions and the backing file name all live in the first cluster, so one
            // read of at most 2 MiB (bounded by the file size) has everything.
            var first = new byte[Math.Min(fileLength, 1 << MaxClusterBits)];
            file.ReadExactly(0, first, 0, first.Length, "qcow2 header");

            var h = new Qcow2Header();
            if (BigEndian.U32(first, 0) != Magic)
                throw QcowException.Corrupt(path, $"Not a qcow2 image: bad magic 0x{BigEndian.U32(first, 0):X8} (expected 0x{Magic:X8}, \"QFI\\xfb\")");
            h.Version = (int)BigEndian.U32(first, 4);
            if (h.Version == 1)
                throw QcowException.Unsupported(path, "qcow2 version 1 (the original qcow format) is not supported; convert it with qemu-img first");
            if (h.Version != 2 && h.Version != 3)
                throw QcowException.Unsupported(path, $"Unsupported qcow2 version {h.Version} (only versions 2 and 3 exist)");
            h.BackingFileOffset = BigEndian.U64(first, 8);
            h.BackingFileSize = BigEndian.U32(first, 16);
            uint clusterBits = BigEndian.U32(first, 20);
            if (clusterBits < MinClusterBits || clusterBits > MaxClusterBits)
                throw QcowException.Corrupt(path, $"cluster_bits {clusterBits} is out of range (cluster size must be 512 B to 2 MiB, cluster_bits 9 to 21)");
            h.ClusterBits = (int)clusterBits;
            h.Size = BigEndian.U64(first, 24);
            h.CryptMethod = BigEndian.U32(first, 32);
            h.L1Size = BigEndian.U32(first, 36);
            h.L1TableOffset = BigEndian.U64(first, 40);
            h.RefcountTableOffset = BigEndian.U64(first, 48);
            h.RefcountTableClusters = BigEndian.U32(first, 56);
            h.SnapshotCount = BigEndian.U32(first, 60);
            h.SnapshotsOffset = BigEndian.U64(first, 64);

            if (h.Version == 2)
            {
                h.HeaderLength = V2HeaderLength;
                h.RefcountOrder = 4;
            }
            else
            {
                if (fileLength < V3HeaderLength)
                    throw QcowException.Corrupt(path, $"Truncated qcow2 v3 header: the file has {fileLength} bytes, a v3 header needs {V3HeaderLength}");
                h.IncompatibleFeatures = BigEndian.U64(first, 72);
                h.CompatibleFeatures = BigEndian.U64(first, 80);
                h.AutoclearFeatures = BigEndian.U64(first, 88);
                uint order = BigEndian.U32(first, 96);
                h.HeaderLength = BigEndian.U32(first, 100);
                if (h.HeaderLength < V3HeaderLength)
                    throw QcowException.Corrupt(path, $"header_length {h.HeaderLength} is shorter than the 104 bytes a version 3 header needs");
                if (h.HeaderLength % 8 != 0)
                    throw QcowException.Corrupt(path, $"header_length {h.HeaderLength} is not a multiple of 8");
                if (h.HeaderLength > h.ClusterSize)
                    throw QcowException.Corrupt(path, $"header_length {h.HeaderLength} is larger than the cluster size {h.ClusterSize}");
                if (h.HeaderLength > fileLength)
                    throw QcowException.Corrupt(path, $"Truncated qcow2 header: header_length is {h.HeaderLength} but the file has {fileLength} bytes");
                if (order > 6)
                    throw QcowException.Corrupt(path, $"refcount_order {order} is above 6 (refcount widths are 1 to 64 bits)");
                h.RefcountOrder = (int)order;
                if (h.HeaderLength > 104)
                {
                    h.CompressionType = (Qcow2CompressionType)first[104];
                    int extraStart = 112;
                    if (h.HeaderLength > extraStart)
                    {
                        h.ExtraHeaderFields = new byte[h.HeaderLength - extraStart];
                        Array.Copy(first, extraStart, h.ExtraHeaderFields, 0, h.ExtraHeaderFields.Length);
                    }
                }
            }

            h.ReadExtensions(path, first);
            h.Validate(path, fileLength);
            return h;
        }

        private void ReadExtensions(string path, byte[] first)
        {
            long end = Math.Min(first.Length, ClusterSize);
            if (BackingFileOffset != 0)
            {
                if (BackingFileOffset > (ulong)ClusterSize)
                    throw QcowException.Corrupt(path, $"Invalid backing file offset 0x{BackingFileOffset:X}: the name must lie in the first cluster");
                end = Math.Min(end, (long)BackingFileOffset);
            }
            long offset = HeaderLength;
            var seen = new HashSet<uint>();
            while (offset + 8 <= end)
            {
                uint type = BigEndian.U32(first, (int)offset);
                uint length = BigEndian.U32(first, (int)offset + 4);
                if (type == Qcow2HeaderExtension.End) break;
                if (length > end - offset - 8)
                    throw QcowException.Corrupt(path, $"Header extension 0x{type:X8} at offset {offset} is too large ({length} bytes) for the header cluster");
                var data = new byte[length];
                Array.Copy(first, (int)offset + 8, data, 0, (int)length);
                var ext = new Qcow2HeaderExtension { Type = type, Data = data, Offset = offset };
                if (type != 0 && IsKnownExtension(type) && !seen.Add(type))
                    throw QcowException.Corrupt(path, $"Header extension {ext.Name} appears more than once");
                Extensions.Add(ext);
                switch (type)
                {
                    case Qcow2HeaderExtension.BackingFormat:
                        if (length > MaxBackingFileNameLength)
                            throw QcowException.Corrupt(path, $"Backing format name is too long ({length} bytes)");
                        BackingFormat = Encoding.UTF8.GetString(data);
                        break;
                    case Qcow2HeaderExtension.FeatureNameTable:
                        for (int i = 0; i + 48 <= data.Length; i += 48)
                        {
                            int nameLength = 0;
                            while (nameLength < 46 && data[i + 2 + nameLength] != 0) nameLength++;
                            FeatureNames.Add(new Qcow2FeatureName
                            {
                                Type = data[i], Bit = data[i + 1],
                                Name = Encoding.UTF8.GetString(data, i + 2, nameLength),
                            });
                        }
                        break;
                    case Qcow2HeaderExtension.Bitmaps:
                        if (length < 24)
                            throw QcowException.Corrupt(path, $"Bitmaps header extension is {length} bytes, it needs 24");
                        BitmapCount = BigEndian.U32(data, 0);
                        BitmapDirectorySize = BigEndian.U64(data, 8);
                        BitmapDirectoryOffset = BigEndian.U64(data, 16);
                        break;
                    case Qcow2HeaderExtension.FullDiskEncryption:
                        if (length != 16)
                            throw QcowException.Corrupt(path, $"Full disk encryption header extension is {length} bytes, it must be 16");
                        EncryptionHeaderOffset = BigEndian.U64(data, 0);
                        EncryptionHeaderLength = BigEndian.U64(data, 8);
                        break;
                    case Qcow2HeaderExtension.ExternalDataFile:
                        if (length > MaxBackingFileNameLength)
                            throw QcowException.Corrupt(path, $"External data file name is too long ({length} bytes)");
                        DataFile = Encoding.UTF8.GetString(data);
                        break;
                }
                offset += 8 + ((length + 7L) & ~7L);
            }

            if (BackingFileOffset != 0)
            {
                if (BackingFileSize > MaxBackingFileNameLength)
                    throw QcowException.Corrupt(path, $"Backing file name is {BackingFileSize} bytes long; the spec allows at most {MaxBackingFileNameLength}");
                if (BackingFileOffset + BackingFileSize > (ulong)Math.Min(first.Length, ClusterSize))
                    throw QcowException.Corrupt(path, $"Backing file name at 0x{BackingFileOffset:X} ({BackingFileSize} bytes) runs past the header cluster or the end of the file");
                BackingFile = Encoding.UTF8.GetString(first, (int)BackingFileOffset, (int)BackingFileSize);
            }
        }

        private static bool IsKnownExtension(uint type) =>
            type == Qcow2HeaderExtension.BackingFormat || type == Qcow2HeaderExtension.FeatureNameTable ||
            type == Qcow2HeaderExtension.Bitmaps || type == Qcow2HeaderExtension.FullDiskEncryption ||
            type == Qcow2HeaderExtension.ExternalDataFile;

        private void Validate(string path, long fileLength)
        {
            ulong unknown = IncompatibleFeatures & ~KnownIncompatibleMask;
            if (unknown != 0)
            {
                var names = FeatureList(unknown, bit => FeatureName(0, bit));
                throw QcowException.Unsupported(path, $"Unsupported qcow2 incompatible feature(s): {string.Join(", ", names.Select((n, i) => n))}" +
                    $" (incompatible_features 0x{IncompatibleFeatures:X})");
            }
            if ((IncompatibleFeatures & (ulong)Qcow2IncompatibleFeatures.CompressionType) != 0)
            {
                if (HeaderLength <= 104)
                    throw QcowException.Corrupt(path, "The compression type bit is set but the header has no compression_type field");
                if (CompressionType == Qcow2CompressionType.Zlib)
                    throw QcowException.Corrupt(path, "The compression type bit is set but compression_type is 0 (zlib)");
            }
            else if (CompressionType != Qcow2CompressionType.Zlib)
                throw QcowException.Corrupt(path, $"compression_type is {(byte)CompressionType} but the compression type bit is not set");
            if (CompressionType != Qcow2CompressionType.Zlib && CompressionType != Qcow2CompressionType.Zstd)
                throw QcowException.Unsupported(path, $"Unknown compression type {(byte)CompressionType}");
            if (HasExtendedL2 && ClusterBits < 14)
                throw QcowException.Corrupt(path, $"Extended L2 entries need clusters of at least 16 KiB, this image has {ClusterSize} bytes");
            if (HasExternalDataFile && DataFile == null)
                throw QcowException.Unsupported(path, "The image uses an external data file but does not name it (QEMU's data-file option is needed)");
            if (CryptMethod > 2)
                throw QcowException.Unsupported(path, $"Unknown encryption method {CryptMethod}");
            if (Size > MaxVirtualSize)
                throw QcowException.Corrupt(path, $"Virtual size {Size} exceeds the maximum {MaxVirtualSize}");

            int cs = ClusterSize;
            if (L1Size > MaxL1Bytes / 8)
                throw QcowException.Corrupt(path, $"Active L1 table too large: l1_size {L1Size} entries exceeds QEMU's limit of {MaxL1Bytes / 8}");
            ulong l1Needed = L1EntriesFor(Size, ClusterBits, HasExtendedL2);
            if (L1Size < l1Needed)
                throw QcowException.Corrupt(path, $"L1 table is too small: l1_size {L1Size} entries cannot map the virtual size {Size} (needs {l1Needed})");
            if (L1Size > 0)
                CheckTable(path, fileLength, "L1 table", L1TableOffset, (ulong)L1Size * 8);

            if ((ulong)RefcountTableClusters * (ulong)cs > MaxRefcountTableBytes)
                throw QcowException.Corrupt(path, $"Reference count table too large: {RefcountTableClusters} clusters exceeds QEMU's limit of {MaxRefcountTableBytes / (ulong)cs}");
            if (RefcountTableClusters == 0)
                throw QcowException.Corrupt(path, "The image has no refcount table (refcount_table_clusters is 0)");
            CheckTable(path, fileLength, "Refcount table", RefcountTableOffset, (ulong)RefcountTableClusters * (ulong)cs);

            if (SnapshotCount > MaxSnapshots)
                throw QcowException.Corrupt(path, $"Snapshot table has {SnapshotCount} entries; at most {MaxSnapshots} are allowed");
            if (SnapshotCount > 0)
                CheckTable(path, fileLength, "Snapshot table", SnapshotsOffset, (ulong)SnapshotCount * 40);  // 40 = smallest entry
        }

        private void CheckTable(string path, long fileLength, string what, ulong offset, ulong bytes)
        {
            if (offset % (ulong)ClusterSize != 0)
                throw QcowException.Corrupt(path, $"{what} offset 0x{offset:X} is not aligned to a cluster boundary");
            if (offset == 0)
                throw QcowException.Corrupt(path, $"{what} offset is 0 (it would overlap the header)");
            if (offset > (ulong)fileLength || bytes > (ulong)fileLength - offset)
                throw QcowException.Corrupt(path, $"{what} at 0x{offset:X} ({bytes} bytes) runs past the end of the file (file size {fileLength})");
        }

        /// <summary>
        /// The first cluster as this header describes it: fields, extensions (known ones rebuilt from
        /// the properties, unknown ones kept), end marker, and the backing file name after them.
        /// </summary>
        public byte[] Serialize()
        {
            int cs = ClusterSize;
            var b = new byte[cs];
            uint headerLength = Version == 2 ? V2HeaderLength : Math.Max(HeaderLength, 112u);
            BigEndian.Put32(b, 0, Magic);
            BigEndian.Put32(b, 4, (uint)Version);
            BigEndian.Put32(b, 20, (uint)ClusterBits);
            BigEndian.Put64(b, 24, Size);
            BigEndian.Put32(b, 32, CryptMethod);
            BigEndian.Put32(b, 36, L1Size);
            BigEndian.Put64(b, 40, L1TableOffset);
            BigEndian.Put64(b, 48, RefcountTableOffset);
            BigEndian.Put32(b, 56, RefcountTableClusters);
            BigEndian.Put32(b, 60, SnapshotCount);
            BigEndian.Put64(b, 64, SnapshotsOffset);
            if (Version >= 3)
            {
                BigEndian.Put64(b, 72, IncompatibleFeatures);
                BigEndian.Put64(b, 80, CompatibleFeatures);
                BigEndian.Put64(b, 88, AutoclearFeatures);
                BigEndian.Put32(b, 96, (uint)RefcountOrder);
                BigEndian.Put32(b, 100, headerLength);
                b[104] = (byte)CompressionType;
                if (ExtraHeaderFields.Length > 0 && 112 + ExtraHeaderFields.Length <= headerLength)
                    Array.Copy(ExtraHeaderFields, 0, b, 112, ExtraHeaderFields.Length);
            }

            int offset = (int)headerLength;
            void PutExtension(uint type, byte[] data)
            {
                int padded = (data.Length + 7) & ~7;
                if (offset + 8 + padded + 8 > cs)
                    throw new QcowException(QcowErrorKind.InvalidArgument, "The header extensions do not fit in the first cluster");
                BigEndian.Put32(b, offset, type);
                BigEndian.Put32(b, offset + 4, (uint)data.Length);
                Array.Copy(data, 0, b, offset + 8, data.Length);
                offset += 8 + padded;
            }

            {
                if (BackingFormat != null) PutExtension(Qcow2HeaderExtension.BackingFormat, Encoding.UTF8.GetBytes(BackingFormat));
                if (DataFile != null) PutExtension(Qcow2HeaderExtension.ExternalDataFile, Encoding.UTF8.GetBytes(DataFile));
                if (CryptMethod != 0 && EncryptionHeaderOffset != 0)
                {
                    var fde = new byte[16];
                    BigEndian.Put64(fde, 0, EncryptionHeaderOffset);
                    BigEndian.Put64(fde, 8, EncryptionHeaderLength);
                    PutExtension(Qcow2HeaderExtension.FullDiskEncryption, fde);
                }
                foreach (var ext in Extensions.Where(e => e.Type == Qcow2HeaderExtension.Bitmaps || !IsKnownExtension(e.Type)))
                    PutExtension(ext.Type, ext.Data);
                if (Version >= 3) PutExtension(Qcow2HeaderExtension.FeatureNameTable, StandardFeatureTable());
            }
            // End-of-extensions marker: 8 zero bytes, already zero.
            offset += 8;

            if (BackingFile != null)
            {
                var name = Encoding.UTF8.GetBytes(BackingFile);
                if (name.Length > MaxBackingFileNameLength)
                    throw new QcowException(QcowErrorKind.InvalidArgument, $"Backing file name is {name.Length} bytes; at most {MaxBackingFileNameLength} are allowed");
                if (offset + name.Length > cs)
                    throw new QcowException(QcowErrorKind.InvalidArgument, "The backing file name does not fit in the header cluster");
                Array.Copy(name, 0, b, offset, name.Length);
                BackingFileOffset = (ulong)offset;
                BackingFileSize = (uint)name.Length;
            }
            else
            {
                BackingFileOffset = 0;
                BackingFileSize = 0;
            }
            BigEndian.Put64(b, 8, BackingFileOffset);
            BigEndian.Put32(b, 16, BackingFileSize);
            HeaderLength = headerLength;
            return b;
        }

        /// <summary>The feature name table QEMU writes into every v3 image it creates.</summary>
        private static byte[] StandardFeatureTable()
        {
            var entries = new (int type, int bit, string name)[]
            {
                (0, 0, "dirty bit"), (0, 1, "corrupt bit"), (0, 2, "external data file"),
                (0, 3, "compression type"), (0, 4, "extended L2 entries"),
                (1, 0, "lazy refcounts"), (2, 0, "bitmaps"), (2, 1, "raw external data"),
            };
            var data = new byte[entries.Length * 48];
            for (int i = 0; i < entries.Length; i++)
            {
                data[i * 48] = (byte)entries[i].type;
                data[i * 48 + 1] = (byte)entries[i].bit;
                var name = Encoding.ASCII.GetBytes(entries[i].name);
                Array.Copy(name, 0, data, i * 48 + 2, name.Length);
            }
            return data;
        }
    }
}
