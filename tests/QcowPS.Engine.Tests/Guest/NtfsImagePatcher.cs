using System;
using System.IO;
using QcowPS.Engine.Guest.FileSystems;
using static System.Buffers.Binary.BinaryPrimitives;

namespace QcowPS.Engine.Tests.Guest
{
    /// <summary>
    /// Finds and patches structures of an NTFS volume made by mkntfs in a raw file, through the same
    /// field offsets NtfsFileSystem reads (mkntfs's $MFT is contiguous, so record n is at a fixed place).
    /// Patches stay clear of the update-sequence words at the end of each 512-byte stride of a record.
    /// </summary>
    internal sealed class NtfsImagePatcher
    {
        private const int MftMirrClusterField = 56;
        private readonly string _path;

        public NtfsImagePatcher(string path)
        {
            _path = path;
            var boot = Read(0, 512);
            int bps = ReadUInt16LittleEndian(boot.AsSpan(NtfsFileSystem.BytesPerSectorField));
            ClusterBytes = bps * boot[NtfsFileSystem.SectorsPerClusterField];
            Clusters = (long)ReadUInt64LittleEndian(boot.AsSpan(NtfsFileSystem.TotalSectorsField)) * bps / ClusterBytes;
            MftLcn = (long)ReadUInt64LittleEndian(boot.AsSpan(NtfsFileSystem.MftClusterField));
            MftMirrLcn = (long)ReadUInt64LittleEndian(boot.AsSpan(MftMirrClusterField));
            int perRecord = (sbyte)boot[NtfsFileSystem.ClustersPerRecordField];
            RecordBytes = perRecord > 0 ? perRecord * (int)ClusterBytes : 1 << -perRecord;
        }

        public long ClusterBytes { get; }
        public long Clusters { get; }
        public long MftLcn { get; }
        public long MftMirrLcn { get; }
        public int RecordBytes { get; }

        public long RecordOffset(int record) => MftLcn * ClusterBytes + (long)record * RecordBytes;

        /// <summary>The offset in the file of the first attribute of a type in a record (unnamed or not).</summary>
        public long AttributeOffset(int record, uint type)
        {
            var r = Read(RecordOffset(record), RecordBytes);
            int a = ReadUInt16LittleEndian(r.AsSpan(NtfsFileSystem.FirstAttributeField));
            while (ReadUInt32LittleEndian(r.AsSpan(a)) != type)
            {
                if (ReadUInt32LittleEndian(r.AsSpan(a)) == 0xFFFFFFFF) throw new InvalidOperationException($"record {record} has no attribute 0x{type:X}");
                a += (int)ReadUInt32LittleEndian(r.AsSpan(a + NtfsFileSystem.AttributeLengthField));
            }
            return RecordOffset(record) + a;
        }

        /// <summary>Where a resident attribute's value starts in the file.</summary>
        public long ResidentValueOffset(int record, uint type)
        {
            long a = AttributeOffset(record, type);
            return a + ReadUInt16LittleEndian(Read(a + NtfsFileSystem.ResidentValueOffsetField, 2));
        }

        /// <summary>The first cluster of a system file's $DATA (its first run).</summary>
        public long FirstLcn(int record)
        {
            long a = AttributeOffset(record, NtfsFileSystem.DataAttribute);
            var attr = Read(a, 128);
            int p = ReadUInt16LittleEndian(attr.AsSpan(NtfsFileSystem.RunListOffsetField));
            int header = attr[p], lengthBytes = header & 0x0F, offsetBytes = header >> 4;
            long lcn = 0;
            for (int i = offsetBytes - 1; i >= 0; i--) lcn = (lcn << 8) | attr[p + 1 + lengthBytes + i];
            return lcn;
        }

        /// <summary>Writes bytes at a file offset; a write inside an MFT record must miss its update-sequence words.</summary>
        public void Write(long offset, byte[] bytes)
        {
            long mftStart = MftLcn * ClusterBytes;
            if (offset >= mftStart && offset < mftStart + 16L * RecordBytes)
                for (long o = offset; o < offset + bytes.Length; o++)
                    if ((o - mftStart) % NtfsFileSystem.FixupStride >= NtfsFileSystem.FixupStride - 2)
                        throw new InvalidOperationException($"a patch at {offset} would overwrite an update-sequence word");
            using var f = new FileStream(_path, FileMode.Open, FileAccess.ReadWrite);
            f.Position = offset;
            f.Write(bytes, 0, bytes.Length);
        }

        /// <summary>Patches a record of the first four in $MFT and its copy in $MFTMirr alike, as NTFS writes them.</summary>
        public void WriteMirrored(int record, int within, byte[] bytes)
        {
            Write(RecordOffset(record) + within, bytes);
            if (record <= 3) Write(MftMirrLcn * ClusterBytes + (long)record * RecordBytes + within, bytes);
        }

        public byte[] Read(long offset, int count)
        {
            var b = new byte[count];
            using var f = new FileStream(_path, FileMode.Open, FileAccess.Read);
            f.Position = offset;
            f.ReadExactly(b, 0, count);
            return b;
        }
    }
}
