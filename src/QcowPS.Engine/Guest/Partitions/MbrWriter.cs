using System;
using System.Collections.Generic;
using System.Security.Cryptography;
using System.Text;
using static System.Buffers.Binary.BinaryPrimitives;

namespace QcowPS.Engine.Guest.Partitions
{
    /// <summary>
    /// Writes a DOS/MBR partition table in sector 0: up to four primary partitions, or, for more, three
    /// primary ones and an extended partition (number 4, to the end of the disk) holding the rest as
    /// logical partitions 5, 6, ... Each logical partition has its own extended boot record (EBR) in the
    /// 1 MiB-aligned sector 1 MiB before it, linked to the next EBR by an address relative to the
    /// extended partition's start: the layout sfdisk and fdisk write by default.
    /// </summary>
    internal sealed class MbrWriter
    {
        private const int Sector = MbrReader.SectorSize;
        public const int MaxPrimaryPartitions = 4;
        /// <summary>With logical partitions, the primary ones beside the extended partition (which takes entry 4).</summary>
        public const int PrimariesBesideExtended = MaxPrimaryPartitions - 1;
        /// <summary>The highest partition number fdisk and sfdisk make (libfdisk's MBR limit): logical partitions 5..60.</summary>
        public const int MaxPartitionNumber = 60;
        /// <summary>The partitions QcowPS writes at most: numbers 1..60 but for the extended partition, 4.</summary>
        public const int MaxPartitions = MaxPartitionNumber - 1;
        /// <summary>MBR start and count fields are 32-bit sector numbers: nothing reaches past 2^32 sectors (2 TiB).</summary>
        public const long MaxSectors = 1L << 32;
        private const int DiskSignatureField = 440;
        private const byte LinuxType = 0x83;
        /// <summary>
        /// The extended partition and EBR links: 05, as fdisk and sfdisk write at any disk size (parted writes
        /// 0F, "W95 Ext'd (LBA)"; readers take both).
        /// </summary>
        private const byte ExtendedType = 0x05;
        // The CHS geometry every tool assumes for LBA disks, and the "beyond CHS" marker for sectors past it.
        private const int Heads = 255;
        private const int SectorsPerTrack = 63;
        private const int MaxCylinder = 1023;

        private readonly VirtualDisk _disk;

        public MbrWriter(VirtualDisk disk) => _disk = disk;

        /// <summary>Whether the index-th of count partitions is a logical one (more than four: the fourth and later).</summary>
        public static bool IsLogical(int index, int count) => count > MaxPrimaryPartitions && index >= PrimariesBesideExtended;

        /// <summary>The number of the index-th partition when it is a logical one: 5 for the first, as every reader numbers them.</summary>
        public static int LogicalNumber(int index) => index - PrimariesBesideExtended + MaxPrimaryPartitions + 1;

        /// <summary>Where a logical partition starts when its EBR goes at the aligned sector ebr: 1 MiB on, as sfdisk places it.</summary>
        public static long LogicalStartAfterEbr(long ebr) => ebr + PartitionTableWriter.AlignmentSectors;

        private static long EbrOf(long logicalFirst) => logicalFirst - PartitionTableWriter.AlignmentSectors;

        public void Write(List<(long first, long count, PartitionSpec spec)> layout)
        {
            var mbr = new byte[Sector];
            _disk.Read(0, mbr, 0, DiskSignatureField);  // keep the boot code a boot loader may have put there
            var id = new byte[4];
            using (var rng = RandomNumberGenerator.Create()) rng.GetBytes(id);
            id.CopyTo(mbr, DiskSignatureField);
            int primaries = layout.Count > MaxPrimaryPartitions ? PrimariesBesideExtended : layout.Count;
            for (int i = 0; i < primaries; i++)
            {
                var (first, count, spec) = layout[i];
                PutEntry(mbr, i, TypeOf(spec), bootable: false, first, count);
            }
            if (layout.Count > MaxPrimaryPartitions)
            {
                // The extended partition runs from the first EBR to the end of the disk (as far as 32 bits reach), as sfdisk makes it: room for more logical partitions later.
                long extendedStart = EbrOf(layout[primaries].first);
                long extendedEnd = Math.Min(_disk.Length / Sector, MaxSectors);
                PutEntry(mbr, primaries, ExtendedType, bootable: false, extendedStart, extendedEnd - extendedStart);
                WriteLogical(layout, primaries, extendedStart);
            }
            PutSignature(mbr);
            ClearStaleGpt();
            // Sector 0 last: until it is written, the old table (if any) stands, not a new one pointing at EBRs yet to come.
            _disk.Write(0, mbr, 0, Sector);
        }

        /// <summary>
        /// One EBR per logical partition: entry 1 the partition, its start relative to this EBR; entry 2 the
        /// link to the next EBR, its start relative to the extended partition and its size reaching to the
        /// end of the next logical partition (as fdisk writes it); the last EBR's link is empty.
        /// </summary>
        private void WriteLogical(List<(long first, long count, PartitionSpec spec)> layout, int firstLogical, long extendedStart)
        {
            for (int i = firstLogical; i < layout.Count; i++)
            {
                var (first, count, spec) = layout[i];
                long ebr = EbrOf(first);
                var sector = new byte[Sector];
                PutEntry(sector, 0, TypeOf(spec), bootable: false, first, count, relativeTo: ebr);
                if (i + 1 < layout.Count)
                {
                    long nextEbr = EbrOf(layout[i + 1].first);
                    long nextEnd = layout[i + 1].first + layout[i + 1].count;
                    PutEntry(sector, 1, ExtendedType, bootable: false, nextEbr, nextEnd - nextEbr, relativeTo: extendedStart);
                }
                PutSignature(sector);
                _disk.Write(ebr * Sector, sector, 0, Sector);
            }
        }

        private static byte TypeOf(PartitionSpec spec) => spec.Type == null ? LinuxType : PartitionTypes.MbrTypeFrom(spec.Type).Value;

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

        /// <summary>
        /// An MBR or EBR entry for sectors first..first+count-1: the CHS fields hold absolute addresses, the
        /// start field first − relativeTo (0 in the MBR; the EBR or the extended partition's start in an EBR).
        /// </summary>
        internal static void PutEntry(byte[] mbr, int index, byte type, bool bootable, long first, long count, long relativeTo = 0)
        {
            int o = MbrReader.EntriesOffset + index * MbrReader.EntrySize;
            mbr[o + MbrReader.StatusField] = bootable ? MbrReader.BootableFlag : (byte)0;
            PutChs(mbr, o + MbrReader.FirstChsField, first);
            mbr[o + MbrReader.TypeField] = type;
            PutChs(mbr, o + MbrReader.LastChsField, first + count - 1);
            WriteUInt32LittleEndian(new Span<byte>(mbr, o + MbrReader.StartLbaField, 4), (uint)(first - relativeTo));
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
