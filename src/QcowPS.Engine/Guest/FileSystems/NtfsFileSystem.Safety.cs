using System;
using System.Collections.Generic;
using System.Text;

namespace QcowPS.Engine.Guest.FileSystems
{
    /// <summary>
    /// The checks that must all pass before a byte of an NTFS volume is called free. Each failure is a
    /// refusal with the reason, never a guess: a dirty or chkdsk-pending $Volume, a version other than
    /// 3.x, a $LogFile that is not clean by ntfs-3g's rules, a hibernated or fast-started Windows
    /// (ntfs-3g's ntfs_volume_check_hiberfile), system files QcowPS cannot read whole, and a $Bitmap
    /// that calls a cluster of $Boot, $MFT, $MFTMirr, $LogFile or itself free.
    /// </summary>
    public sealed partial class NtfsFileSystem
    {
        // $VOLUME_INFORMATION value.
        internal const int VolumeMajorVersionField = 8;
        internal const int VolumeMinorVersionField = 9;
        internal const int VolumeFlagsField = 10;
        internal const ushort VolumeIsDirty = 0x0001;
        internal const ushort VolumeChkdskUnderway = 0x4000;

        // $INDEX_ROOT value, INDEX_HEADER, INDEX_ENTRY and the FILE_NAME key of a directory index.
        internal const string IndexName = "$I30";
        internal const string IndexBlockMagic = "INDX";
        internal const int IndexRootBlockSizeField = 8;
        internal const int IndexRootHeader = 16;
        internal const int IndexBlockHeader = 24;
        internal const int EntriesOffsetField = 0;
        internal const int IndexLengthField = 4;
        internal const int EntryLengthField = 8;
        internal const int EntryKeyLengthField = 10;
        internal const int EntryFlagsField = 12;
        internal const int EntryKey = 16;
        internal const ushort LastEntry = 0x0002;
        internal const int FileNameLengthField = 64;
        internal const int FileNameField = 66;
        private const long MftReferenceMask = 0x0000FFFFFFFFFFFF;

        internal const string HiberFile = "hiberfil.sys";
        /// <summary>ntfs-3g's NTFS_HIBERFILE_HEADER_SIZE: a shorter hiberfil.sys is a hibernated non-system volume.</summary>
        internal const int HiberFileHeaderSize = 4096;
        /// <summary>The first bytes of hiberfil.sys while Windows is hibernated or fast-started (lower case when hibernated, upper or "wake" by newer Windows).</summary>
        internal static readonly string[] HibernatedSignatures = { "hibr", "HIBR", "wake", "WAKE" };

        private bool _checked;
        private string _refusal;
        private byte[] _checkedBitmap;

        public override string RefusalReason
        {
            get
            {
                if (_checked) return _refusal;
                _checked = true;
                try
                {
                    _refusal = Check(out _checkedBitmap);
                }
                catch (QcowException e) when (e.Kind == QcowErrorKind.Corrupt)
                {
                    _refusal = e.Message;
                }
                return _refusal;
            }
        }

        private string Check(out byte[] bitmap)
        {
            bitmap = null;
            if (_recordBytes == 0) return "its boot sector does not describe a volume QcowPS understands (sector, cluster or MFT record size)";
            var mftRecord = ReadRecordAt(_mftOffset);
            if (mftRecord == null) return "its $MFT record (0) is damaged or not in use";
            string problem = DataOf(mftRecord, "$MFT", allowResident: false, out _mft);
            if (problem != null) return problem;
            if (_mft.DataSize < (BitmapRecord + 1L) * _recordBytes) return $"its $MFT of {_mft.DataSize} bytes is too small to hold the system files";

            if ((problem = VolumeStateProblem()) != null) return problem;
            var systemFiles = new List<(string Name, NtfsAttributeData Data)> { ("$MFT", _mft) };
            foreach (var (number, name) in new[] { (MftMirrRecord, "$MFTMirr"), (LogFileRecord, "$LogFile"), (BitmapRecord, "$Bitmap") })
            {
                var record = ReadRecord(number);
                if (record == null) return $"its {name} MFT record ({number}) is damaged or not in use";
                if ((problem = DataOf(record, name, allowResident: false, out var data)) != null) return problem;
                systemFiles.Add((name, data));
            }
            if ((problem = MirrorProblem(systemFiles[1].Data)) != null) return problem;
            var log = systemFiles[2].Data;
            if ((problem = NtfsLogFile.Problem((pos, count) => ReadData(log, pos, count), log.DataSize)) != null) return problem;
            if ((problem = HibernationProblem()) != null) return problem;

            bitmap = ReadBitmap(out problem);
            if (bitmap == null) return problem;
            // Cluster 0 holds $Boot; the system files' clusters must be in use, or the map is not to be believed.
            if (!BitIsSet(bitmap, 0)) return "its $Bitmap marks cluster 0 ($Boot) free: the allocation map is inconsistent (run chkdsk /f)";
            foreach (var (name, data) in systemFiles)
                foreach (var (lcn, count) in data.Runs)
                    for (long c = lcn; c < lcn + count; c++)
                        if (!BitIsSet(bitmap, c)) return $"its $Bitmap marks cluster {c} of {name} free: the allocation map is inconsistent (run chkdsk /f)";
            return null;
        }

        /// <summary>
        /// ntfs-3g's mount check: the records $MFTMirr copies (up to $Volume, record 3) equal their
        /// originals over the bytes in use, or one of the two was written without the other.
        /// </summary>
        private string MirrorProblem(NtfsAttributeData mirror)
        {
            long copies = Math.Min(VolumeRecord + 1, mirror.DataSize / _recordBytes);
            if (copies < 1) return "its $MFTMirr holds no record";
            for (int i = 0; i < copies; i++)
            {
                var original = ReadRecord(i);
                var copy = Deprotect(ReadData(mirror, (long)i * _recordBytes, _recordBytes));
                if (original == null || copy == null) return $"MFT record {i} or its copy in $MFTMirr is damaged (run chkdsk /f)";
                long used = Math.Min(U32(original, BytesInUseField), (uint)_recordBytes);
                for (int b = 0; b < used; b++)
                    if (original[b] != copy[b]) return $"its $MFTMirr differs from $MFT at record {i} (run chkdsk /f)";
            }
            return null;
        }

        /// <summary>$Volume's $VOLUME_INFORMATION: version 3.x, neither dirty nor with chkdsk under way.</summary>
        private string VolumeStateProblem()
        {
            var record = ReadRecord(VolumeRecord);
            if (record == null) return $"its $Volume MFT record ({VolumeRecord}) is damaged or not in use";
            var info = ResidentValue(record, VolumeInformationAttribute);
            if (info == null || info.Length < VolumeFlagsField + 2) return "its $Volume has no readable volume information";
            int major = info[VolumeMajorVersionField], minor = info[VolumeMinorVersionField];
            if (major != 3) return $"it is NTFS version {major}.{minor}; QcowPS reads 3.x only";
            int flags = U16(info, VolumeFlagsField);
            if ((flags & VolumeIsDirty) != 0) return "its $Volume is marked dirty (not cleanly unmounted, or chkdsk pending): run chkdsk /f in Windows first";
            if ((flags & VolumeChkdskUnderway) != 0) return "its $Volume says chkdsk is under way: let chkdsk finish in Windows first";
            return null;
        }

        /// <summary>
        /// ntfs-3g's ntfs_volume_check_hiberfile: a hiberfil.sys in the root directory that is shorter
        /// than its header, or begins with a hibernation signature, means Windows will resume from
        /// memory that describes the volume as it was, so its free space is not free.
        /// </summary>
        private string HibernationProblem()
        {
            var root = ReadRecord(RootRecord);
            if (root == null) return $"its root directory MFT record ({RootRecord}) is damaged or not in use";
            if (FindAttribute(root, AttributeListAttribute) >= 0) return "its root directory has an attribute list (QcowPS does not follow attribute lists yet)";
            int ir = FindAttribute(root, IndexRootAttribute, IndexName);
            var indexRoot = ir >= 0 && root[ir + NonResidentField] == 0 ? ResidentValue(root, ir) : null;
            if (indexRoot == null || indexRoot.Length < IndexRootHeader + 16) return "its root directory has no readable index root";
            var found = new List<long>();
            string problem = ScanIndexEntries(indexRoot, IndexRootHeader, found, "root index");
            if (problem != null) return problem;

            int ia = FindAttribute(root, IndexAllocationAttribute, IndexName);
            if (ia >= 0)
            {
                if ((problem = ValueOf(root, ia, "the root directory's index allocation", allowResident: false, out var blocks)) != null) return problem;
                int ib = FindAttribute(root, BitmapAttribute, IndexName);
                var inUse = ib >= 0 && root[ib + NonResidentField] == 0 ? ResidentValue(root, ib) : null;
                if (inUse == null) return "the root directory's index bitmap is missing or not resident";
                long blockSize = U32(indexRoot, IndexRootBlockSizeField);
                if (blockSize < FixupStride || blockSize > 65536 || (blockSize & (blockSize - 1)) != 0) return $"the root directory's index block size {blockSize} is not one NTFS uses";
                long count = blocks.DataSize / blockSize;
                for (long i = 0; i < count; i++)
                {
                    if (i >> 3 >= inUse.Length) break;
                    if (!BitIsSet(inUse, i)) continue;
                    var block = ReadData(blocks, i * blockSize, (int)blockSize);
                    int usa = U16(block, UpdateSequenceOffsetField), usaCount = U16(block, UpdateSequenceCountField);
                    if (Encoding.ASCII.GetString(block, 0, 4) != IndexBlockMagic || usaCount != blockSize / FixupStride + 1 || usa < 40
                        || !NtfsLogFile.ApplyFixups(block, usa, usaCount))
                        return $"the root directory's index block {i} is damaged (run chkdsk /f)";
                    if ((problem = ScanIndexEntries(block, IndexBlockHeader, found, $"root index block {i}")) != null) return problem;
                }
            }
            foreach (long number in found)
                if ((problem = HiberFileProblem(number)) != null) return problem;
            return null;
        }

        /// <summary>Walks the entries after an INDEX_HEADER, collecting the MFT references of entries named hiberfil.sys (any case).</summary>
        private static string ScanIndexEntries(byte[] buffer, int header, List<long> found, string where)
        {
            long p = header + (long)U32(buffer, header + EntriesOffsetField);
            long end = header + (long)U32(buffer, header + IndexLengthField);
            if (end > buffer.Length || p < header + 16) return $"the {where} has entries outside its buffer";
            while (true)
            {
                if (p + EntryKey > end) return $"the {where} has no last entry";
                int length = U16(buffer, (int)p + EntryLengthField), keyLength = U16(buffer, (int)p + EntryKeyLengthField);
                int flags = U16(buffer, (int)p + EntryFlagsField);
                if (length < EntryKey || p + length > end) return $"the {where} has an entry of {length} bytes that does not fit";
                if ((flags & LastEntry) != 0) return null;
                int key = (int)p + EntryKey;
                if (keyLength >= FileNameField && EntryKey + keyLength <= length)
                {
                    int n = buffer[key + FileNameLengthField];
                    if (FileNameField + 2 * n <= keyLength
                        && string.Equals(Encoding.Unicode.GetString(buffer, key + FileNameField, 2 * n), HiberFile, StringComparison.OrdinalIgnoreCase))
                        found.Add((long)U64(buffer, (int)p) & MftReferenceMask);
                }
                p += length;
            }
        }

        private string HiberFileProblem(long number)
        {
            var record = ReadRecord(number);
            if (record == null) return $"its root directory names {HiberFile} at MFT record {number}, which is damaged or not in use";
            string problem = DataOf(record, HiberFile, allowResident: true, out var data);
            if (problem != null) return $"{problem}: QcowPS cannot tell whether Windows is hibernated";
            if (data.DataSize < HiberFileHeaderSize)
                return $"its {HiberFile} is shorter than {HiberFileHeaderSize} bytes, which ntfs-3g takes as a hibernated volume: boot Windows and shut it down fully first";
            string signature = Encoding.ASCII.GetString(ReadData(data, 0, 4));
            if (Array.IndexOf(HibernatedSignatures, signature) >= 0)
                return $"Windows is hibernated or fast-started on it ({HiberFile} begins with \"{signature}\"): boot Windows and shut it down fully (Fast Startup off) first";
            return null;
        }
    }
}
