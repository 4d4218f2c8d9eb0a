using System.Buffers.Binary;
using System.IO;

namespace QcowPS.Engine.Tests.Infrastructure
{
    /// <summary>Patches big-endian fields of an image, to break it on purpose.</summary>
    public static class FilePatch
    {
        public static void U32(string path, long offset, uint value)
        {
            var b = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(b, value);
            Bytes(path, offset, b);
        }

        public static void U64(string path, long offset, ulong value)
        {
            var b = new byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(b, value);
            Bytes(path, offset, b);
        }

        public static void Bytes(string path, long offset, byte[] bytes)
        {
            using var f = new FileStream(path, FileMode.Open, FileAccess.Write);
            f.Position = offset;
            f.Write(bytes);
        }

        public static ulong ReadU64(string path, long offset)
        {
            var b = new byte[8];
            using var f = new FileStream(path, FileMode.Open, FileAccess.Read);
            f.Position = offset;
            f.ReadExactly(b);
            return BinaryPrimitives.ReadUInt64BigEndian(b);
        }

        public static uint ReadU32(string path, long offset)
        {
            var b = new byte[4];
            using var f = new FileStream(path, FileMode.Open, FileAccess.Read);
            f.Position = offset;
            f.ReadExactly(b);
            return BinaryPrimitives.ReadUInt32BigEndian(b);
        }
    }
}
