using System.Text;

namespace QcowPS.Engine.Guest.FileSystems
{
    /// <summary>
    /// What is identified by its signature only (swap, LVM2_member, crypto_LUKS, btrfs, exfat):
    /// named like blkid, usage left empty rather than guessed, never optimized.
    /// </summary>
    public sealed class SignatureFileSystem : GuestFileSystem
    {
        private const int SwapPageSize = 4096;
        private const int SwapHeaderOffset = 1024;
        private const int SwapUuidField = 12;
        private const int SwapLabelField = 28;
        private const int LuksUuidField = 168;
        private const int BtrfsSuperblock = 0x10000;
        private const int BtrfsMagicField = 0x40;
        private const int BtrfsUuidField = 0x20;
        private const int BtrfsLabelField = 0x12B;
        private const int LvmLabelSectors = 4;

        private readonly string _type;

        private SignatureFileSystem(VirtualDisk disk, long offset, long length, string type) : base(disk, offset, length) => _type = type;

        public override string Type => _type;

        public static SignatureFileSystem TryOpen(VirtualDisk disk, long offset, long length)
        {
            if (length < 512) return null;
            var head = new byte[(int)System.Math.Min(length, SwapPageSize)];
            disk.Read(offset, head, 0, head.Length);
            if (head.Length >= 6 && Encoding.ASCII.GetString(head, 0, 4) == "LUKS" && head[4] == 0xBA && head[5] == 0xBE)
                return new SignatureFileSystem(disk, offset, length, "crypto_LUKS") { Uuid = Text(head, LuksUuidField, 40) };
            if (Encoding.ASCII.GetString(head, 3, 8) == "EXFAT   ")
                return new SignatureFileSystem(disk, offset, length, "exfat");
            for (int s = 0; s < LvmLabelSectors && (s + 1) * 512 <= head.Length; s++)
                if (Encoding.ASCII.GetString(head, s * 512, 8) == "LABELONE" && Encoding.ASCII.GetString(head, s * 512 + 24, 8) == "LVM2 001")
                    return new SignatureFileSystem(disk, offset, length, "LVM2_member");
            if (head.Length == SwapPageSize)
            {
                string magic = Encoding.ASCII.GetString(head, SwapPageSize - 10, 10);
                if (magic == "SWAPSPACE2" || magic == "SWAP-SPACE")
                    return new SignatureFileSystem(disk, offset, length, "swap")
                    {
                        Uuid = UuidText(head, SwapHeaderOffset + SwapUuidField), Label = Text(head, SwapHeaderOffset + SwapLabelField, 16),
                    };
            }
            if (length >= BtrfsSuperblock + 4096)
            {
                var sb = new byte[4096];
                disk.Read(offset + BtrfsSuperblock, sb, 0, sb.Length);
                if (Encoding.ASCII.GetString(sb, BtrfsMagicField, 8) == "_BHRfS_M")
                    return new SignatureFileSystem(disk, offset, length, "btrfs") { Uuid = UuidText(sb, BtrfsUuidField), Label = Text(sb, BtrfsLabelField, 256) };
            }
            return null;
        }
    }
}
