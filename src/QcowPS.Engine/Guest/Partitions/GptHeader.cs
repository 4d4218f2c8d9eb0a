using System;
using System.Text;
using static System.Buffers.Binary.BinaryPrimitives;

namespace QcowPS.Engine.Guest.Partitions
{
    /// <summary>A GPT header (UEFI spec 5.3.2): parsed with every field checked, or built and serialized.</summary>
    internal sealed class GptHeader
    {
        public const string Signature = "EFI PART";
        public const uint Revision = 0x00010000;
        public const int Size = 92;
        public const int EntrySize = 128;
        /// <summary>The entry arrays we read are bounded (sgdisk makes 128 entries = 16 KiB; this allows 32768).</summary>
        public const int MaxEntryArrayBytes = 4 << 20;

        private const int SignatureField = 0;
        private const int RevisionField = 8;
        private const int HeaderSizeField = 12;
        private const int HeaderCrcField = 16;
        private const int MyLbaField = 24;
        private const int AlternateLbaField = 32;
        private const int FirstUsableLbaField = 40;
        private const int LastUsableLbaField = 48;
        private const int DiskGuidField = 56;
        private const int EntriesLbaField = 72;
        private const int EntryCountField = 80;
        private const int EntrySizeField = 84;
        private const int EntriesCrcField = 88;

        public const int EntryTypeField = 0;
        public const int EntryGuidField = 16;
        public const int EntryFirstLbaField = 32;
        public const int EntryLastLbaField = 40;
        public const int EntryAttributesField = 48;
        public const int EntryNameField = 56;
        public const int EntryNameBytes = 72;

        public long MyLba, AlternateLba, FirstUsableLba, LastUsableLba, EntriesLba;
        public Guid DiskGuid;
        public uint EntryCount, EntryBytes = EntrySize, EntriesCrc;

        public long EntryArrayBytes => (long)EntryCount * EntryBytes;

        /// <summary>Parses the header in a sector read at lba of a disk of so many sectors; null and a reason when it is not valid.</summary>
        public static GptHeader Parse(byte[] sector, long lba, long diskSectors, out string problem)
        {
            problem = null;
            if (Encoding.ASCII.GetString(sector, SignatureField, 8) != Signature) { problem = "no 'EFI PART' signature"; return null; }
            uint headerSize = U32(sector, HeaderSizeField);
            if (headerSize < Size || headerSize > MbrReader.SectorSize) { problem = $"header size {headerSize} is outside 92..512"; return null; }
            uint crc = Crc32.Ieee.Compute(sector, 0, (int)headerSize, HeaderCrcField);
            if (crc != U32(sector, HeaderCrcField)) { problem = $"header CRC32 {U32(sector, HeaderCrcField):x8} does not match its contents ({crc:x8})"; return null; }
            var h = new GptHeader
            {
                MyLba = (long)U64(sector, MyLbaField), AlternateLba = (long)U64(sector, AlternateLbaField),
                FirstUsableLba = (long)U64(sector, FirstUsableLbaField), LastUsableLba = (long)U64(sector, LastUsableLbaField),
                DiskGuid = new Guid(Slice(sector, DiskGuidField, 16)), EntriesLba = (long)U64(sector, EntriesLbaField),
                EntryCount = U32(sector, EntryCountField), EntryBytes = U32(sector, EntrySizeField), EntriesCrc = U32(sector, EntriesCrcField),
            };
            if (h.MyLba != lba) problem = $"it says it is at sector {h.MyLba}, but it was read at sector {lba}";
            else if (h.EntryBytes < EntrySize || h.EntryBytes % 8 != 0 || h.EntryBytes > 4096) problem = $"entry size {h.EntryBytes} is not a multiple of 8 in 128..4096";
            else if (h.EntryArrayBytes > MaxEntryArrayBytes) problem = $"{h.EntryCount} entries of {h.EntryBytes} bytes exceed the {MaxEntryArrayBytes}-byte bound";
            else if (h.FirstUsableLba < 2 || h.LastUsableLba < h.FirstUsableLba || h.LastUsableLba >= diskSectors) problem = $"usable sectors {h.FirstUsableLba}..{h.LastUsableLba} do not fit the disk of {diskSectors} sectors";
            else if (h.EntriesLba < 1 || h.EntriesLba >= diskSectors || (h.EntryArrayBytes + MbrReader.SectorSize - 1) / MbrReader.SectorSize > diskSectors - h.EntriesLba) problem = $"the entry array at sector {h.EntriesLba} does not fit the disk";
            return problem == null ? h : null;
        }

        /// <summary>The 512-byte sector holding this header, CRC filled in.</summary>
        public byte[] ToSector()
        {
            var s = new byte[MbrReader.SectorSize];
            Encoding.ASCII.GetBytes(Signature, 0, 8, s, SignatureField);
            WriteUInt32LittleEndian(new Span<byte>(s, RevisionField, 4), Revision);
            WriteUInt32LittleEndian(new Span<byte>(s, HeaderSizeField, 4), Size);
            WriteUInt64LittleEndian(new Span<byte>(s, MyLbaField, 8), (ulong)MyLba);
            WriteUInt64LittleEndian(new Span<byte>(s, AlternateLbaField, 8), (ulong)AlternateLba);
            WriteUInt64LittleEndian(new Span<byte>(s, FirstUsableLbaField, 8), (ulong)FirstUsableLba);
            WriteUInt64LittleEndian(new Span<byte>(s, LastUsableLbaField, 8), (ulong)LastUsableLba);
            DiskGuid.ToByteArray().CopyTo(s, DiskGuidField);
            WriteUInt64LittleEndian(new Span<byte>(s, EntriesLbaField, 8), (ulong)EntriesLba);
            WriteUInt32LittleEndian(new Span<byte>(s, EntryCountField, 4), EntryCount);
            WriteUInt32LittleEndian(new Span<byte>(s, EntrySizeField, 4), EntryBytes);
            WriteUInt32LittleEndian(new Span<byte>(s, EntriesCrcField, 4), EntriesCrc);
            WriteUInt32LittleEndian(new Span<byte>(s, HeaderCrcField, 4), Crc32.Ieee.Compute(s, 0, Size));
            return s;
        }

        internal static uint U32(byte[] b, int o) => ReadUInt32LittleEndian(new ReadOnlySpan<byte>(b, o, 4));
        internal static ulong U64(byte[] b, int o) => ReadUInt64LittleEndian(new ReadOnlySpan<byte>(b, o, 8));
        internal static byte[] Slice(byte[] b, int o, int n) { var r = new byte[n]; Array.Copy(b, o, r, 0, n); return r; }
    }
}
