using System;
using System.Text;

namespace QcowPS.Engine.Guest.FileSystems
{
    /// <summary>
    /// NTFS: the boot sector (size, cluster size, serial number as blkid's UUID), the label from
    /// $Volume's VOLUME_NAME, and usage from the set bits of $Bitmap (what ntfsinfo -m reports as free
    /// clusters). Every MFT record read has its update sequence checked; anything that does not add up
    /// leaves the label or usage empty rather than guessed. Optimize-QcowImage leaves NTFS alone.
    /// </summary>
    public sealed class NtfsFileSystem : GuestFileSystem
    {
        private const string Oem = "NTFS    ";
        private const int BytesPerSectorField = 11;
        private const int SectorsPerClusterField = 13;
        private const int TotalSectorsField = 40;
        private const int MftClusterField = 48;
        private const int ClustersPerRecordField = 64;
        private const int SerialField = 72;

        private const string RecordMagic = "FILE";
        private const int UpdateSequenceOffsetField = 4;
        private const int UpdateSequenceCountField = 6;
        private const int FirstAttributeField = 20;
        private const int RecordFlagsField = 22;
        private const int RecordInUse = 0x0001;
        /// <summary>The update sequence protects each 512-byte stride of a record, whatever the sector size.</summary>
        private const int FixupStride = 512;

        private const uint AttributeEnd = 0xFFFFFFFF;
        private const uint VolumeNameAttribute = 0x60;
        private const uint DataAttribute = 0x80;
        private const int AttributeLengthField = 4;
        private const int NonResidentField = 8;
        private const int NameLengthField = 9;
        private const int ResidentValueLengthField = 16;
        private const int ResidentValueOffsetField = 20;
        private const int RunListOffsetField = 32;
        private const int DataSizeField = 48;

        private const int VolumeRecord = 3;
        private const int BitmapRecord = 6;
        /// <summary>$Bitmap of a volume of 2^31 clusters (8 TiB of 4 KiB clusters) is 256 MiB: a larger one is not read.</summary>
        private const long MaxBitmapBytes = 256L << 20;

        private readonly long _clusterBytes;
        private readonly long _clusters;
        private readonly long _mftOffset;
        private readonly int _recordBytes;

        private NtfsFileSystem(VirtualDisk disk, long offset, long length, byte[] boot) : base(disk, offset, length)
        {
            int bps = U16(boot, BytesPerSectorField);
            int spc = boot[SectorsPerClusterField];
            // Sectors per cluster above 0x80 is a negative power of two (2^-n clusters of 4 KiB+ sectors).
            long cluster = spc <= 0x80 ? (long)spc * bps : 1L << (256 - spc);
            ulong sectors = U64(boot, TotalSectorsField);
            Uuid = U64(boot, SerialField).ToString("X16");
            if (bps < 256 || bps > 4096 || sectors > (ulong)(length / bps)) return;
            Size = (long)sectors * bps;
            if (cluster <= 0 || cluster > 2 << 20) return;
            BlockSize = (int)cluster;
            _clusterBytes = cluster;
            _clusters = (long)sectors * bps / cluster;
            // Clusters per MFT record: positive is a count of clusters, negative n means 2^-n bytes.
            int perRecord = (sbyte)boot[ClustersPerRecordField];
            long recordBytes = perRecord > 0 ? perRecord * cluster : perRecord < 0 && perRecord > -32 ? 1L << -perRecord : 0;
            ulong mftCluster = U64(boot, MftClusterField);
            if (recordBytes < FixupStride || recordBytes > 65536 || mftCluster >= (ulong)_clusters) return;
            _recordBytes = (int)recordBytes;
            _mftOffset = (long)mftCluster * cluster;
            Size = _clusters * cluster;
            try
            {
                ReadLabel();
                ReadUsage();
            }
            catch (QcowException e) when (e.Kind == QcowErrorKind.Corrupt)
            {
                // A record or run that points outside the volume: label and usage stay empty, not guessed.
            }
        }

        public override string Type => "ntfs";
        public override string RefusalReason => "QcowPS does not zero NTFS free space yet";

        public static NtfsFileSystem TryOpen(VirtualDisk disk, long offset, long length)
        {
            if (length < 512) return null;
            var boot = new byte[512];
            disk.Read(offset, boot, 0, 512);
            return Encoding.ASCII.GetString(boot, 3, 8) == Oem ? new NtfsFileSystem(disk, offset, length, boot) : null;
        }

        private void ReadLabel()
        {
            var record = ReadRecord(VolumeRecord);
            if (record == null) return;
            var value = ResidentValue(record, VolumeNameAttribute);
            if (value != null && value.Length % 2 == 0 && value.Length > 0) Label = Encoding.Unicode.GetString(value);
        }

        /// <summary>Used and free from the bits of $Bitmap over the volume's clusters (a set bit is a used cluster).</summary>
        private void ReadUsage()
        {
            var record = ReadRecord(BitmapRecord);
            if (record == null) return;
            int a = FindAttribute(record, DataAttribute);
            if (a < 0 || record[a + NonResidentField] == 0) return;
            long dataSize = (long)U64(record, a + DataSizeField);
            long needed = (_clusters + 7) / 8;
            if (dataSize < needed || needed > MaxBitmapBytes) return;
            var bitmap = new byte[needed];
            if (!ReadRuns(record, a, bitmap)) return;
            long free = CountClearBits(bitmap, _clusters);
            Available = free * _clusterBytes;
            Used = (_clusters - free) * _clusterBytes;
        }

        /// <summary>Reads the first buffer.Length bytes of a non-resident attribute through its run list; false when the runs do not add up.</summary>
        private bool ReadRuns(byte[] record, int attribute, byte[] buffer)
        {
            int p = attribute + U16(record, attribute + RunListOffsetField);
            int end = attribute + (int)U32(record, attribute + AttributeLengthField);
            long lcn = 0, filled = 0;
            while (filled < buffer.Length)
            {
                if (p >= end) return false;
                int header = record[p++];
                if (header == 0) return false;
                int lengthBytes = header & 0x0F, offsetBytes = header >> 4;
                if (lengthBytes == 0 || lengthBytes > 8 || offsetBytes > 8 || p + lengthBytes + offsetBytes > end) return false;
                long runClusters = (long)LittleEndian(record, p, lengthBytes, signed: false);
                p += lengthBytes;
                if (offsetBytes == 0) return false;  // a sparse run in $Bitmap: not a volume ntfs-3g or Windows writes
                lcn += LittleEndian(record, p, offsetBytes, signed: true);
                p += offsetBytes;
                if (runClusters <= 0 || lcn < 0 || lcn >= _clusters || runClusters > _clusters - lcn) return false;
                long bytes = Math.Min(runClusters * _clusterBytes, buffer.Length - filled);
                ReadVolume(lcn * _clusterBytes, buffer, (int)filled, (int)bytes);
                filled += bytes;
            }
            return true;
        }

        private static long LittleEndian(byte[] b, int o, int n, bool signed)
        {
            long v = 0;
            for (int i = n - 1; i >= 0; i--) v = (v << 8) | b[o + i];
            if (signed && n < 8 && (b[o + n - 1] & 0x80) != 0) v |= -1L << (8 * n);
            return v;
        }

        /// <summary>An MFT record with its update sequence applied, or null when it is not a valid record in use.</summary>
        private byte[] ReadRecord(int number)
        {
            long at = _mftOffset + (long)number * _recordBytes;
            if (at > Length - _recordBytes) return null;
            var r = ReadVolume(at, _recordBytes);
            if (Encoding.ASCII.GetString(r, 0, 4) != RecordMagic || (U16(r, RecordFlagsField) & RecordInUse) == 0) return null;
            int usa = U16(r, UpdateSequenceOffsetField), count = U16(r, UpdateSequenceCountField);
            if (count != _recordBytes / FixupStride + 1 || usa < 42 || usa + 2 * count > _recordBytes) return null;
            for (int i = 1; i < count; i++)
            {
                int tail = i * FixupStride - 2;
                if (r[tail] != r[usa] || r[tail + 1] != r[usa + 1]) return null;  // a torn write: not trusted
                r[tail] = r[usa + 2 * i];
                r[tail + 1] = r[usa + 2 * i + 1];
            }
            return r;
        }

        /// <summary>The offset of the first unnamed attribute of a type in a record, or -1.</summary>
        private int FindAttribute(byte[] record, uint type)
        {
            int a = U16(record, FirstAttributeField);
            while (a >= 24 && a <= record.Length - 16)
            {
                uint t = U32(record, a);
                if (t == AttributeEnd) return -1;
                uint length = U32(record, a + AttributeLengthField);
                if (length < 16 || length > record.Length - a) return -1;
                if (t == type && record[a + NameLengthField] == 0 && (record[a + NonResidentField] == 0 || length >= 64)) return a;
                a += (int)length;
            }
            return -1;
        }

        private byte[] ResidentValue(byte[] record, uint type)
        {
            int a = FindAttribute(record, type);
            if (a < 0 || record[a + NonResidentField] != 0) return null;
            int length = (int)U32(record, a + AttributeLengthField);
            uint size = U32(record, a + ResidentValueLengthField);
            int o = U16(record, a + ResidentValueOffsetField);
            if (size > (uint)length || o > length - size) return null;
            var value = new byte[size];
            Array.Copy(record, a + o, value, 0, size);
            return value;
        }
    }
}
