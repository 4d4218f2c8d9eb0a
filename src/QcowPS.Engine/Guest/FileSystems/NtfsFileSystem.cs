using System.Text;

namespace QcowPS.Engine.Guest.FileSystems
{
    /// <summary>
    /// NTFS: identified from its boot sector (size, serial number as blkid's UUID). Its label and
    /// usage live in the MFT ($Volume, $Bitmap), which QcowPS does not read yet: usage is left empty
    /// and Optimize-QcowImage leaves it alone.
    /// </summary>
    public sealed class NtfsFileSystem : GuestFileSystem
    {
        private const string Oem = "NTFS    ";
        private const int BytesPerSectorField = 11;
        private const int SectorsPerClusterField = 13;
        private const int TotalSectorsField = 40;
        private const int SerialField = 72;

        private NtfsFileSystem(VirtualDisk disk, long offset, long length, byte[] boot) : base(disk, offset, length)
        {
            int bps = U16(boot, BytesPerSectorField);
            int spc = boot[SectorsPerClusterField];
            // Sectors per cluster above 0x80 is a negative power of two (2^-n clusters of 4 KiB+ sectors).
            long cluster = spc <= 0x80 ? (long)spc * bps : 1L << (256 - spc);
            ulong sectors = U64(boot, TotalSectorsField);
            if (bps >= 256 && bps <= 4096 && sectors <= (ulong)(length / bps))
            {
                Size = (long)sectors * bps;
                if (cluster > 0 && cluster <= 2 << 20) BlockSize = (int)cluster;
            }
            Uuid = U64(boot, SerialField).ToString("X16");
        }

        public override string Type => "ntfs";
        public override string RefusalReason => "QcowPS does not read the NTFS $Bitmap yet";

        public static NtfsFileSystem TryOpen(VirtualDisk disk, long offset, long length)
        {
            if (length < 512) return null;
            var boot = new byte[512];
            disk.Read(offset, boot, 0, 512);
            return Encoding.ASCII.GetString(boot, 3, 8) == Oem ? new NtfsFileSystem(disk, offset, length, boot) : null;
        }
    }
}
