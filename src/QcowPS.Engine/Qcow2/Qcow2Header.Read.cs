using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using QcowPS.Engine.IO;
using Layout = QcowPS.Engine.Qcow2.Qcow2HeaderLayout;

namespace QcowPS.Engine.Qcow2
{
    /// <summary>Reading the header: every field checked against the file and the spec's limits.</summary>
    public sealed partial class Qcow2Header
    {
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

            var header = new Qcow2Header();
            if (BigEndian.U32(first, Layout.Magic) != Magic)
                throw QcowException.Corrupt(path, $"Not a qcow2 image: bad magic 0x{BigEndian.U32(first, Layout.Magic):X8} (expected 0x{Magic:X8}, \"QFI\\xfb\")");
            header.Version = (int)BigEndian.U32(first, Layout.Version);
            if (header.Version == 1)
                throw QcowException.Unsupported(path, "qcow2 version 1 (the original qcow format) is not supported; convert it with qemu-img first");
            if (header.Version != 2 && header.Version != 3)
                throw QcowException.Unsupported(path, $"Unsupported qcow2 version {header.Version} (only versions 2 and 3 exist)");
            header.BackingFileOffset = BigEndian.U64(first, Layout.BackingFileOffset);
            header.BackingFileSize = BigEndian.U32(first, Layout.BackingFileSize);
            uint clusterBits = BigEndian.U32(first, Layout.ClusterBits);
            if (clusterBits < MinClusterBits || clusterBits > MaxClusterBits)
                throw QcowException.Corrupt(path, $"cluster_bits {clusterBits} is out of range (cluster size must be 512 B to 2 MiB, cluster_bits 9 to 21)");
            header.ClusterBits = (int)clusterBits;
            header.Size = BigEndian.U64(first, Layout.Size);
            header.CryptMethod = BigEndian.U32(first, Layout.CryptMethod);
            header.L1Size = BigEndian.U32(first, Layout.L1Size);
            header.L1TableOffset = BigEndian.U64(first, Layout.L1TableOffset);
            header.RefcountTableOffset = BigEndian.U64(first, Layout.RefcountTableOffset);
            header.RefcountTableClusters = BigEndian.U32(first, Layout.RefcountTableClusters);
            header.SnapshotCount = BigEndian.U32(first, Layout.SnapshotCount);
            header.SnapshotsOffset = BigEndian.U64(first, Layout.SnapshotsOffset);

            if (header.Version == 2)
            {
                header.HeaderLength = V2HeaderLength;
                header.RefcountOrder = 4;
            }
            else
            {
                if (fileLength < V3HeaderLength)
                    throw QcowException.Corrupt(path, $"Truncated qcow2 v3 header: the file has {fileLength} bytes, a v3 header needs {V3HeaderLength}");
                header.IncompatibleFeatures = BigEndian.U64(first, Layout.IncompatibleFeatures);
                header.CompatibleFeatures = BigEndian.U64(first, Layout.CompatibleFeatures);
                header.AutoclearFeatures = BigEndian.U64(first, Layout.AutoclearFeatures);
                uint order = BigEndian.U32(first, Layout.RefcountOrder);
                header.HeaderLength = BigEndian.U32(first, Layout.HeaderLength);
                if (header.HeaderLength < V3HeaderLength)
                    throw QcowException.Corrupt(path, $"header_length {header.HeaderLength} is shorter than the {V3HeaderLength} bytes a version 3 header needs");
                if (header.HeaderLength % 8 != 0)
                    throw QcowException.Corrupt(path, $"header_length {header.HeaderLength} is not a multiple of 8");
                if (header.HeaderLength > header.ClusterSize)
                    throw QcowException.Corrupt(path, $"header_length {header.HeaderLength} is larger than the cluster size {header.ClusterSize}");
                if (header.HeaderLength > fileLength)
                    throw QcowException.Corrupt(path, $"Truncated qcow2 header: header_length is {header.HeaderLength} but the file has {fileLength} bytes");
                if (order > 6)
                    throw QcowException.Corrupt(path, $"refcount_order {order} is above 6 (refcount widths are 1 to 64 bits)");
                header.RefcountOrder = (int)order;
                if (header.HeaderLength > Layout.CompressionType)
                {
                    header.CompressionType = (Qcow2CompressionType)first[Layout.CompressionType];
                    int extraStart = Layout.KnownFieldsEnd;
                    if (header.HeaderLength > extraStart)
                    {
                        header.ExtraHeaderFields = new byte[header.HeaderLength - extraStart];
                        Array.Copy(first, extraStart, header.ExtraHeaderFields, 0, header.ExtraHeaderFields.Length);
                    }
                }
            }

            header.ReadExtensions(path, first);
            header.Validate(path, fileLength);
            return header;
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
            while (offset + Layout.ExtensionData <= end)
            {
                uint type = BigEndian.U32(first, (int)offset + Layout.ExtensionType);
                uint length = BigEndian.U32(first, (int)offset + Layout.ExtensionLength);
                if (type == Qcow2HeaderExtension.End) break;
                if (length > end - offset - Layout.ExtensionData)
                    throw QcowException.Corrupt(path, $"Header extension 0x{type:X8} at offset {offset} is too large ({length} bytes) for the header cluster");
                var data = new byte[length];
                Array.Copy(first, (int)offset + Layout.ExtensionData, data, 0, (int)length);
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
                        for (int i = 0; i + Layout.FeatureNameEntryLength <= data.Length; i += Layout.FeatureNameEntryLength)
                        {
                            int nameLength = 0;
                            while (nameLength < Layout.FeatureNameTextLength && data[i + Layout.FeatureNameText + nameLength] != 0) nameLength++;
                            FeatureNames.Add(new Qcow2FeatureName
                            {
                                Type = data[i + Layout.FeatureNameType], Bit = data[i + Layout.FeatureNameBit],
                                Name = Encoding.UTF8.GetString(data, i + Layout.FeatureNameText, nameLength),
                            });
                        }
                        break;
                    case Qcow2HeaderExtension.Bitmaps:
                        if (length < Layout.BitmapsExtensionLength)
                            throw QcowException.Corrupt(path, $"Bitmaps header extension is {length} bytes, it needs {Layout.BitmapsExtensionLength}");
                        BitmapCount = BigEndian.U32(data, Layout.BitmapsCount);
                        BitmapDirectorySize = BigEndian.U64(data, Layout.BitmapsDirectorySize);
                        BitmapDirectoryOffset = BigEndian.U64(data, Layout.BitmapsDirectoryOffset);
                        break;
                    case Qcow2HeaderExtension.FullDiskEncryption:
                        if (length != Layout.EncryptionExtensionLength)
                            throw QcowException.Corrupt(path, $"Full disk encryption header extension is {length} bytes, it must be {Layout.EncryptionExtensionLength}");
                        EncryptionHeaderOffset = BigEndian.U64(data, Layout.EncryptionHeaderOffset);
                        EncryptionHeaderLength = BigEndian.U64(data, Layout.EncryptionHeaderLength);
                        break;
                    case Qcow2HeaderExtension.ExternalDataFile:
                        if (length > MaxBackingFileNameLength)
                            throw QcowException.Corrupt(path, $"External data file name is too long ({length} bytes)");
                        DataFile = Encoding.UTF8.GetString(data);
                        break;
                }
                offset += Layout.ExtensionData + ((length + Layout.ExtensionAlignment - 1L) & ~(Layout.ExtensionAlignment - 1L));
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
                if (HeaderLength <= Layout.CompressionType)
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

            int clusterSize = ClusterSize;
            if (L1Size > MaxL1Bytes / 8)
                throw QcowException.Corrupt(path, $"Active L1 table too large: l1_size {L1Size} entries exceeds QEMU's limit of {MaxL1Bytes / 8}");
            ulong l1Needed = L1EntriesFor(Size, ClusterBits, HasExtendedL2);
            if (L1Size < l1Needed)
                throw QcowException.Corrupt(path, $"L1 table is too small: l1_size {L1Size} entries cannot map the virtual size {Size} (needs {l1Needed})");
            if (L1Size > 0)
                CheckTable(path, fileLength, "L1 table", L1TableOffset, (ulong)L1Size * 8);

            if ((ulong)RefcountTableClusters * (ulong)clusterSize > MaxRefcountTableBytes)
                throw QcowException.Corrupt(path, $"Reference count table too large: {RefcountTableClusters} clusters exceeds QEMU's limit of {MaxRefcountTableBytes / (ulong)clusterSize}");
            if (RefcountTableClusters == 0)
                throw QcowException.Corrupt(path, "The image has no refcount table (refcount_table_clusters is 0)");
            CheckTable(path, fileLength, "Refcount table", RefcountTableOffset, (ulong)RefcountTableClusters * (ulong)clusterSize);

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
    }
}
