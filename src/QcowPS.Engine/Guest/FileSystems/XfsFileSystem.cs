using System.Text;

namespace QcowPS.Engine.Guest.FileSystems
{
    /// <summary>
    /// XFS: identified, with usage from the superblock's counters (what xfs_db -c 'sb 0' prints). Its
    /// free space lives in per-AG B+trees, which QcowPS does not walk yet: Optimize-QcowImage leaves it alone.
    /// </summary>
    public sealed class XfsFileSystem : GuestFileSystem
    {
        private const string Magic = "XFSB";
        private const int BlockSizeField = 4;
        private const int DataBlocksField = 8;
        private const int UuidField = 32;
        private const int NameField = 108;
        private const int FreeDataBlocksField = 144;

        private XfsFileSystem(VirtualDisk disk, long offset, long length, byte[] sb) : base(disk, offset, length)
        {
            uint blockSize = BigEndian(sb, BlockSizeField);
            ulong blocks = BigEndian64(sb, DataBlocksField), free = BigEndian64(sb, FreeDataBlocksField);
            Uuid = UuidText(sb, UuidField);
            Label = Text(sb, NameField, 12);
            // Counters from a hostile superblock are reported only when they describe a file system that fits its volume.
            if (blockSize >= 512 && blockSize <= 65536 && blocks <= (ulong)(length / blockSize) && free <= blocks)
            {
                BlockSize = (int)blockSize;
                Size = (long)blocks * blockSize;
                Available = (long)free * blockSize;
                Used = Size - Available;
            }
        }

        public override string Type => "xfs";
        public override string RefusalReason => "QcowPS does not walk the XFS free-space B+trees yet";

        public static XfsFileSystem TryOpen(VirtualDisk disk, long offset, long length)
        {
            if (length < 512) return null;
            var sb = new byte[512];
            disk.Read(offset, sb, 0, 512);
            return Encoding.ASCII.GetString(sb, 0, 4) == Magic ? new XfsFileSystem(disk, offset, length, sb) : null;
        }

        private static uint BigEndian(byte[] b, int o) => System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(new System.ReadOnlySpan<byte>(b, o, 4));
        private static ulong BigEndian64(byte[] b, int o) => System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(new System.ReadOnlySpan<byte>(b, o, 8));
    }
}
