using System;
using System.Collections.Generic;
using System.Text;

namespace QcowPS.Engine.Guest.FileSystems
{
    /// <summary>
    /// NTFS: the boot sector (size, cluster size, serial number as blkid's UUID), the label from
    /// $Volume's VOLUME_NAME, and usage from the set bits of $Bitmap (what ntfsinfo -m reports as free
    /// clusters). Every MFT record read has its update sequence checked; anything that does not add up
    /// leaves the label or usage empty rather than guessed. Free clusters are given to
    /// Optimize-QcowImage only after the checks of NtfsFileSystem.Safety.cs find the volume cleanly
    /// shut down, not hibernated, and its $Bitmap consistent with the system files' clusters.
    /// </summary>
    public sealed partial class NtfsFileSystem : GuestFileSystem
    {
        private const string Oem = "NTFS    ";
        internal const int BytesPerSectorField = 11;
        internal const int SectorsPerClusterField = 13;
        internal const int TotalSectorsField = 40;
        internal const int MftClusterField = 48;
        internal const int ClustersPerRecordField = 64;
        private const int SerialField = 72;

        // MFT record (FILE) header.
        private const string RecordMagic = "FILE";
        internal const int UpdateSequenceOffsetField = 4;
        internal const int UpdateSequenceCountField = 6;
        internal const int FirstAttributeField = 20;
        private const int RecordFlagsField = 22;
        internal const int BytesInUseField = 24;
        private const int RecordInUse = 0x0001;
        /// <summary>The update sequence protects each 512-byte stride of a record, whatever the sector size.</summary>
        internal const int FixupStride = 512;

        // Attribute types.
        private const uint AttributeEnd = 0xFFFFFFFF;
        internal const uint AttributeListAttribute = 0x20;
        internal const uint FileNameAttribute = 0x30;
        private const uint VolumeNameAttribute = 0x60;
        internal const uint VolumeInformationAttribute = 0x70;
        internal const uint DataAttribute = 0x80;
        internal const uint IndexRootAttribute = 0x90;
        internal const uint IndexAllocationAttribute = 0xA0;
        internal const uint BitmapAttribute = 0xB0;

        // Attribute header (common, resident and non-resident parts).
        internal const int AttributeLengthField = 4;
        internal const int NonResidentField = 8;
        internal const int NameLengthField = 9;
        internal const int NameOffsetField = 10;
        internal const int AttributeFlagsField = 12;
        internal const int ResidentValueLengthField = 16;
        internal const int ResidentValueOffsetField = 20;
        internal const int LowestVcnField = 16;
        internal const int HighestVcnField = 24;
        internal const int RunListOffsetField = 32;
        internal const int AllocatedSizeField = 40;
        internal const int DataSizeField = 48;
        internal const int InitializedSizeField = 56;
        /// <summary>ATTR_COMPRESSION_MASK, ATTR_IS_ENCRYPTED and ATTR_IS_SPARSE: values QcowPS does not read.</summary>
        internal const ushort CompressedEncryptedOrSparse = 0x00FF | 0x4000 | 0x8000;

        // System files (MFT record numbers).
        internal const int MftRecord = 0;
        internal const int MftMirrRecord = 1;
        internal const int LogFileRecord = 2;
        internal const int VolumeRecord = 3;
        internal const int RootRecord = 5;
        internal const int BitmapRecord = 6;
        /// <summary>$Bitmap of a volume of 2^31 clusters (8 TiB of 4 KiB clusters) is 256 MiB: a larger one is not read.</summary>
        private const long MaxBitmapBytes = 256L << 20;

        private readonly long _clusterBytes;
        private readonly long _clusters;
        private readonly long _mftOffset;
        private readonly int _recordBytes;
        /// <summary>$MFT's own data: every record but 0 is found through it (null until read, or when it does not add up).</summary>
        private NtfsAttributeData _mft;

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
                var mft = ReadRecordAt(_mftOffset);
                if (mft != null && DataOf(mft, "$MFT", allowResident: false, out var data) == null) _mft = data;
                ReadLabel();
                ReadUsage();
            }
            catch (QcowException e) when (e.Kind == QcowErrorKind.Corrupt)
            {
                // A record or run that points outside the volume: label and usage stay empty, not guessed.
            }
        }

        public override string Type => "ntfs";

        public static NtfsFileSystem TryOpen(VirtualDisk disk, long offset, long length)
        {
            if (length < 512) return null;
            var boot = new byte[512];
            disk.Read(offset, boot, 0, 512);
            return Encoding.ASCII.GetString(boot, 3, 8) == Oem ? new NtfsFileSystem(disk, offset, length, boot) : null;
        }

        /// <summary>The clusters whose $Bitmap bit is clear, in bytes from the start of the volume; only after every check passed.</summary>
        public override IEnumerable<FreeRun> FreeRuns()
        {
            string refusal = RefusalReason;
            if (refusal != null) throw new QcowException(QcowErrorKind.Unsupported, Disk.Path, $"The {Type} file system at offset {Offset} is left untouched: {refusal}");
            return Free(_checkedBitmap);
        }

        private IEnumerable<FreeRun> Free(byte[] bitmap)
        {
            foreach (var (first, count) in ClearBitRuns(bitmap, _clusters, 0))
                yield return new FreeRun(first * _clusterBytes, count * _clusterBytes);
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
            var bitmap = ReadBitmap(out _);
            if (bitmap == null) return;
            long free = CountClearBits(bitmap, _clusters);
            Available = free * _clusterBytes;
            Used = (_clusters - free) * _clusterBytes;
        }

        /// <summary>The first ceil(clusters / 8) bytes of $Bitmap's data, or null with the reason.</summary>
        private byte[] ReadBitmap(out string problem)
        {
            long needed = (_clusters + 7) / 8;
            var record = ReadRecord(BitmapRecord);
            if (record == null) { problem = "its $Bitmap MFT record (6) is damaged or not in use"; return null; }
            problem = DataOf(record, "$Bitmap", allowResident: false, out var data);
            if (problem != null) return null;
            if (needed > MaxBitmapBytes) { problem = $"its $Bitmap of {needed} bytes is larger than QcowPS reads"; return null; }
            if (data.DataSize < needed) { problem = $"its $Bitmap holds {data.DataSize} bytes, fewer than the {needed} its {_clusters} clusters need"; return null; }
            var bitmap = new byte[needed];
            ReadData(data, 0, bitmap, 0, (int)needed);
            return bitmap;
        }

        /// <summary>
        /// The unnamed $DATA of a record, checked: no attribute list, not compressed, encrypted or sparse,
        /// and its run list whole and inside the volume. Null when it is usable, else why not.
        /// </summary>
        private string DataOf(byte[] record, string what, bool allowResident, out NtfsAttributeData data)
        {
            data = null;
            if (FindAttribute(record, AttributeListAttribute) >= 0) return $"{what} has an attribute list (QcowPS does not follow attribute lists yet)";
            int a = FindAttribute(record, DataAttribute);
            if (a < 0) return $"{what} has no readable $DATA attribute";
            return ValueOf(record, a, what, allowResident, out data);
        }

        private string ValueOf(byte[] record, int a, string what, bool allowResident, out NtfsAttributeData data)
        {
            data = null;
            if ((U16(record, a + AttributeFlagsField) & CompressedEncryptedOrSparse) != 0) return $"{what} is compressed, encrypted or sparse (QcowPS does not read those)";
            if (record[a + NonResidentField] == 0)
            {
                if (!allowResident) return $"{what} is resident in its MFT record, which NTFS never does";
                var value = ResidentValue(record, a);
                if (value == null) return $"{what} has a resident value that overruns its record";
                data = new NtfsAttributeData { Resident = value, DataSize = value.Length, InitializedSize = value.Length };
                return null;
            }
            return DecodeRuns(record, a, what, out data);
        }

        /// <summary>
        /// A non-resident attribute's run list, bounded by its record and checked: runs start at VCN 0,
        /// each lies inside the volume, no two share a cluster (a list that loops back on itself), and
        /// together they are exactly the allocated size, which holds the data size.
        /// </summary>
        private string DecodeRuns(byte[] record, int a, string what, out NtfsAttributeData data)
        {
            data = null;
            int end = a + (int)U32(record, a + AttributeLengthField);
            int p = a + U16(record, a + RunListOffsetField);
            long lowest = (long)U64(record, a + LowestVcnField), highest = (long)U64(record, a + HighestVcnField);
            long allocated = (long)U64(record, a + AllocatedSizeField), size = (long)U64(record, a + DataSizeField);
            long initialized = (long)U64(record, a + InitializedSizeField);
            if (lowest != 0) return $"{what}'s $DATA starts at VCN {lowest} (an extent QcowPS does not follow)";
            if (p < a + 64 || p > end) return $"{what}'s run list lies outside its attribute";
            var result = new NtfsAttributeData { DataSize = size, InitializedSize = initialized };
            long lcn = 0, vcns = 0;
            while (true)
            {
                if (p >= end) return $"{what}'s run list has no end marker";
                int header = record[p++];
                if (header == 0) break;
                int lengthBytes = header & 0x0F, offsetBytes = header >> 4;
                if (lengthBytes == 0 || lengthBytes > 8 || offsetBytes > 8 || p + lengthBytes + offsetBytes > end) return $"{what}'s run list has a malformed run at byte {p - 1 - a}";
                long count = LittleEndian(record, p, lengthBytes, signed: false);
                p += lengthBytes;
                if (offsetBytes == 0) return $"{what} has a sparse run (QcowPS does not read those)";
                lcn += LittleEndian(record, p, offsetBytes, signed: true);
                p += offsetBytes;
                if (count <= 0 || lcn < 0 || lcn >= _clusters || count > _clusters - lcn)
                    return $"{what}'s run list points outside the volume (clusters {lcn}+{count} of {_clusters})";
                if (vcns > _clusters - count) return $"{what}'s run list covers more clusters than the volume has";
                vcns += count;
                result.Runs.Add((lcn, count));
            }
            if (vcns != highest + 1) return $"{what}'s runs cover {vcns} clusters, not the {highest + 1} its header says";
            if (allocated != vcns * _clusterBytes || size < 0 || size > allocated || initialized < 0 || initialized > size)
                return $"{what}'s sizes (allocated {allocated}, data {size}, initialized {initialized}) do not match its {vcns} clusters";
            var sorted = new List<(long Lcn, long Count)>(result.Runs);
            sorted.Sort((x, y) => x.Lcn.CompareTo(y.Lcn));
            for (int i = 1; i < sorted.Count; i++)
                if (sorted[i - 1].Lcn + sorted[i - 1].Count > sorted[i].Lcn) return $"{what}'s run list uses cluster {sorted[i].Lcn} twice";
            data = result;
            return null;
        }

        /// <summary>Reads bytes of an attribute's value through its runs; bytes past the initialized size read as zeros.</summary>
        private void ReadData(NtfsAttributeData data, long pos, byte[] buffer, int index, int count)
        {
            if (pos < 0 || count < 0 || pos > data.DataSize - count)
                throw new QcowException(QcowErrorKind.Corrupt, Disk.Path, $"An NTFS read of {count} bytes at {pos} runs past an attribute of {data.DataSize} bytes");
            if (data.Resident != null) { Array.Copy(data.Resident, pos, buffer, index, count); return; }
            Array.Clear(buffer, index, count);
            long end = Math.Min(pos + count, data.InitializedSize);
            long runStart = 0;
            foreach (var (lcn, clusters) in data.Runs)
            {
                long runBytes = clusters * _clusterBytes;
                long from = Math.Max(pos, runStart), to = Math.Min(end, runStart + runBytes);
                if (from < to) ReadVolume(lcn * _clusterBytes + (from - runStart), buffer, index + (int)(from - pos), (int)(to - from));
                runStart += runBytes;
                if (runStart >= end) break;
            }
        }

        private byte[] ReadData(NtfsAttributeData data, long pos, int count)
        {
            var b = new byte[count];
            ReadData(data, pos, b, 0, count);
            return b;
        }

        private static long LittleEndian(byte[] b, int o, int n, bool signed)
        {
            long v = 0;
            for (int i = n - 1; i >= 0; i--) v = (v << 8) | b[o + i];
            if (signed && n < 8 && (b[o + n - 1] & 0x80) != 0) v |= -1L << (8 * n);
            return v;
        }

        /// <summary>MFT record number, found through $MFT's runs once they are known (record 0 and the boot sector's MFT cluster before).</summary>
        private byte[] ReadRecord(long number)
        {
            if (_mft == null) return number < 0 || number > (Length - _mftOffset) / _recordBytes ? null : ReadRecordAt(_mftOffset + number * _recordBytes);
            if (number < 0 || number >= _mft.DataSize / _recordBytes) return null;
            var r = ReadData(_mft, number * _recordBytes, _recordBytes);
            return Deprotect(r);
        }

        /// <summary>An MFT record at a byte offset of the volume with its update sequence applied, or null when it is not a valid record in use.</summary>
        private byte[] ReadRecordAt(long at)
        {
            if (at > Length - _recordBytes) return null;
            return Deprotect(ReadVolume(at, _recordBytes));
        }

        private byte[] Deprotect(byte[] r)
        {
            if (Encoding.ASCII.GetString(r, 0, 4) != RecordMagic || (U16(r, RecordFlagsField) & RecordInUse) == 0) return null;
            int usa = U16(r, UpdateSequenceOffsetField), count = U16(r, UpdateSequenceCountField);
            if (count != _recordBytes / FixupStride + 1 || usa < 42 || usa + 2 * count > _recordBytes) return null;
            return NtfsLogFile.ApplyFixups(r, usa, count) ? r : null;  // a torn write: not trusted
        }

        /// <summary>The offset of the first attribute of a type in a record (unnamed, or with the given name), or -1.</summary>
        private static int FindAttribute(byte[] record, uint type, string name = null)
        {
            int a = U16(record, FirstAttributeField);
            while (a >= 24 && a <= record.Length - 16)
            {
                uint t = U32(record, a);
                if (t == AttributeEnd) return -1;
                uint length = U32(record, a + AttributeLengthField);
                if (length < 16 || length > record.Length - a) return -1;
                if (t == type && (record[a + NonResidentField] == 0 ? length >= 24 : length >= 64) && NameIs(record, a, (int)length, name)) return a;
                a += (int)length;
            }
            return -1;
        }

        private static bool NameIs(byte[] record, int a, int length, string name)
        {
            int n = record[a + NameLengthField];
            if (name == null) return n == 0;
            int o = U16(record, a + NameOffsetField);
            return n == name.Length && o + 2 * n <= length && Encoding.Unicode.GetString(record, a + o, 2 * n) == name;
        }

        private static byte[] ResidentValue(byte[] record, uint type)
        {
            int a = FindAttribute(record, type);
            return a < 0 || record[a + NonResidentField] != 0 ? null : ResidentValue(record, a);
        }

        private static byte[] ResidentValue(byte[] record, int a)
        {
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
