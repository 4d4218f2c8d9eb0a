using System;
using System.Linq;
using System.Text;
using QcowPS.Engine.IO;
using Layout = QcowPS.Engine.Qcow2.Qcow2HeaderLayout;

namespace QcowPS.Engine.Qcow2
{
    /// <summary>Writing the header: the first cluster rebuilt from the properties.</summary>
    public sealed partial class Qcow2Header
    {
        /// <summary>
        /// The first cluster as this header describes it: fields, extensions (known ones rebuilt from
        /// the properties, unknown ones kept), end marker, and the backing file name after them.
        /// </summary>
        public byte[] Serialize()
        {
            int clusterSize = ClusterSize;
            var bytes = new byte[clusterSize];
            uint headerLength = Version == 2 ? V2HeaderLength : Math.Max(HeaderLength, (uint)Layout.KnownFieldsEnd);
            BigEndian.Put32(bytes, Layout.Magic, Magic);
            BigEndian.Put32(bytes, Layout.Version, (uint)Version);
            BigEndian.Put32(bytes, Layout.ClusterBits, (uint)ClusterBits);
            BigEndian.Put64(bytes, Layout.Size, Size);
            BigEndian.Put32(bytes, Layout.CryptMethod, CryptMethod);
            BigEndian.Put32(bytes, Layout.L1Size, L1Size);
            BigEndian.Put64(bytes, Layout.L1TableOffset, L1TableOffset);
            BigEndian.Put64(bytes, Layout.RefcountTableOffset, RefcountTableOffset);
            BigEndian.Put32(bytes, Layout.RefcountTableClusters, RefcountTableClusters);
            BigEndian.Put32(bytes, Layout.SnapshotCount, SnapshotCount);
            BigEndian.Put64(bytes, Layout.SnapshotsOffset, SnapshotsOffset);
            if (Version >= 3)
            {
                BigEndian.Put64(bytes, Layout.IncompatibleFeatures, IncompatibleFeatures);
                BigEndian.Put64(bytes, Layout.CompatibleFeatures, CompatibleFeatures);
                BigEndian.Put64(bytes, Layout.AutoclearFeatures, AutoclearFeatures);
                BigEndian.Put32(bytes, Layout.RefcountOrder, (uint)RefcountOrder);
                BigEndian.Put32(bytes, Layout.HeaderLength, headerLength);
                bytes[Layout.CompressionType] = (byte)CompressionType;
                if (ExtraHeaderFields.Length > 0 && Layout.KnownFieldsEnd + ExtraHeaderFields.Length <= headerLength)
                    Array.Copy(ExtraHeaderFields, 0, bytes, Layout.KnownFieldsEnd, ExtraHeaderFields.Length);
            }

            int offset = (int)headerLength;
            void PutExtension(uint type, byte[] data)
            {
                int padded = (data.Length + Layout.ExtensionAlignment - 1) & ~(Layout.ExtensionAlignment - 1);
                if (offset + Layout.ExtensionData + padded + Layout.ExtensionData > clusterSize)  // and room for the end marker
                    throw new QcowException(QcowErrorKind.InvalidArgument, "The header extensions do not fit in the first cluster");
                BigEndian.Put32(bytes, offset + Layout.ExtensionType, type);
                BigEndian.Put32(bytes, offset + Layout.ExtensionLength, (uint)data.Length);
                Array.Copy(data, 0, bytes, offset + Layout.ExtensionData, data.Length);
                offset += Layout.ExtensionData + padded;
            }

            {
                if (BackingFormat != null) PutExtension(Qcow2HeaderExtension.BackingFormat, Encoding.UTF8.GetBytes(BackingFormat));
                if (DataFile != null) PutExtension(Qcow2HeaderExtension.ExternalDataFile, Encoding.UTF8.GetBytes(DataFile));
                if (CryptMethod != 0 && EncryptionHeaderOffset != 0)
                {
                    var fde = new byte[Layout.EncryptionExtensionLength];
                    BigEndian.Put64(fde, Layout.EncryptionHeaderOffset, EncryptionHeaderOffset);
                    BigEndian.Put64(fde, Layout.EncryptionHeaderLength, EncryptionHeaderLength);
                    PutExtension(Qcow2HeaderExtension.FullDiskEncryption, fde);
                }
                foreach (var ext in Extensions.Where(e => e.Type == Qcow2HeaderExtension.Bitmaps || !IsKnownExtension(e.Type)))
                    PutExtension(ext.Type, ext.Data);
                if (Version >= 3) PutExtension(Qcow2HeaderExtension.FeatureNameTable, StandardFeatureTable());
            }
            // End-of-extensions marker: a zero type and length, already zero.
            offset += Layout.ExtensionData;

            if (BackingFile != null)
            {
                var name = Encoding.UTF8.GetBytes(BackingFile);
                if (name.Length > MaxBackingFileNameLength)
                    throw new QcowException(QcowErrorKind.InvalidArgument, $"Backing file name is {name.Length} bytes; at most {MaxBackingFileNameLength} are allowed");
                if (offset + name.Length > clusterSize)
                    throw new QcowException(QcowErrorKind.InvalidArgument, "The backing file name does not fit in the header cluster");
                Array.Copy(name, 0, bytes, offset, name.Length);
                BackingFileOffset = (ulong)offset;
                BackingFileSize = (uint)name.Length;
            }
            else
            {
                BackingFileOffset = 0;
                BackingFileSize = 0;
            }
            BigEndian.Put64(bytes, Layout.BackingFileOffset, BackingFileOffset);
            BigEndian.Put32(bytes, Layout.BackingFileSize, BackingFileSize);
            HeaderLength = headerLength;
            return bytes;
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
            var data = new byte[entries.Length * Layout.FeatureNameEntryLength];
            for (int i = 0; i < entries.Length; i++)
            {
                int at = i * Layout.FeatureNameEntryLength;
                data[at + Layout.FeatureNameType] = (byte)entries[i].type;
                data[at + Layout.FeatureNameBit] = (byte)entries[i].bit;
                var name = Encoding.ASCII.GetBytes(entries[i].name);
                Array.Copy(name, 0, data, at + Layout.FeatureNameText, name.Length);
            }
            return data;
        }
    }
}
