using System;
using System.Collections.Generic;
using System.Security.Cryptography;
using System.Text;
using static System.Buffers.Binary.BinaryPrimitives;

namespace QcowPS.Engine.Guest.Partitions
{
    /// <summary>Writes a DOS/MBR partition table of up to four primary partitions in sector 0.</summary>
    internal sealed class MbrWriter
    {
        private const int Sector = MbrReader.SectorSize;
        public const int MaxPrimaryPartitions = 4;
        /// <summary>MBR start and count fields are 32-bit sector numbers: nothing reaches past 2^32 sectors (2 TiB).</summary>
        public const long MaxSectors = 1L << 32;
        private const int DiskSignatureField = 440;
        private const byte LinuxType = 0x83;
        // The CHS geometry every tool assumes for LBA disks, and the "beyond CHS" marker for sectors past it.
        private const int Heads = 255;
        private const int SectorsPerTrack = 63;
        private const int MaxCylinder = 1023;

        private readonly VirtualDisk _disk;

        public MbrWriter(VirtualDisk disk) => _disk = disk;

        public void Write(List<(long first, long count, PartitionSpec spec)> layout)
        {
            var mbr = new byte[Sector];
            _disk.Read(0, mbr, 0, DiskSignatureField);  // keep the boot code a boot loader may have put there
            var id = new byte[4];
            using (var rng = RandomNumberGenerator.Create()) rng.GetBytes(id);
            id.CopyTo(mbr, DiskSignatureField);
            for (int i = 0; i < layout.Count; i++)
            {
                var (first, count, spec) = layout[i];
                byte type = spec.Type == null ? LinuxType : PartitionTypes.MbrTypeFrom(spec.Type).Value;
                PutEntry(mbr, i, type, bootable: false, first, count);
            }
            PutSignature(mbr);
            ClearStaleGpt();
            _disk.Write(0, mbr, 0, Sector);
        }

        /// <summary>An old GPT's headers would make readers see a GPT behind the new MBR: their signatures go.</summary>
        private void ClearStaleGpt()
        {
            long sectors = _disk.Length / Sector;
            foreach (long lba in new[] { 1, sectors - 1 })
            {
                var s = new byte[Sector];
                _disk.Read(lba * Sector, s, 0, Sector);
                if (Encoding.ASCII.GetString(s, 0, 8) == GptHeader.Signature) _disk.Write(lba * Sector, new byte[Sector], 0, Sector);
            }
        }

        internal static void PutEntry(byte[] mbr, int index, byte type, bool bootable, long first, long count)
        {
            int o = MbrReader.EntriesOffset + index * MbrReader.EntrySize;
            mbr[o + MbrReader.StatusField] = bootable ? MbrReader.BootableFlag : (byte)0;
            PutChs(mbr, o + MbrReader.FirstChsField, first);
            mbr[o + MbrReader.TypeField] = type;
            PutChs(mbr, o + MbrReader.LastChsField, first + count - 1);
            WriteUInt32LittleEndian(new Span<byte>(mbr, o + MbrReader.StartLbaField, 4), (uint)first);
            WriteUInt32LittleEndian(new Span<byte>(mbr, o + MbrReader.SectorCountField, 4), (uint)count);
        }

        internal static void PutSignature(byte[] mbr)
        {
            mbr[MbrReader.SignatureOffset] = 0x55;
            mbr[MbrReader.SignatureOffset + 1] = 0xAA;
        }

        /// <summary>The 3-byte CHS address of a sector (head, sector | cylinder high bits, cylinder low); FE FF FF past cylinder 1023.</summary>
        private static void PutChs(byte[] b, int o, long lba)
        {
            long cylinder = lba / (Heads * SectorsPerTrack);
            if (cylinder > MaxCylinder) { b[o] = 0xFE; b[o + 1] = 0xFF; b[o + 2] = 0xFF; return; }
            long head = lba / SectorsPerTrack % Heads;
            long sector = lba % SectorsPerTrack + 1;
            b[o] = (byte)head;
            b[o + 1] = (byte)(sector | ((cylinder >> 2) & 0xC0));
            b[o + 2] = (byte)(cylinder & 0xFF);
        }
    }
}
