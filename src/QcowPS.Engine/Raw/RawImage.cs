using System;
using QcowPS.Engine.IO;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine.Raw
{
    /// <summary>A raw image: guest offset = file offset, virtual size = file size.</summary>
    public sealed class RawImage : VirtualDisk
    {
        private readonly IHostFile _file;

        private RawImage(IHostFile file) { _file = file; }

        public static RawImage Open(IHostFile file) => new RawImage(file);

        public override string Path => _file.Path;
        public override ImageFormat Format => ImageFormat.Raw;
        public override long Length => _file.Length;
        public override long FileSize => _file.Length;
        public override bool CanWrite => _file.CanWrite;

        public override DiskExtent GetExtent(long offset, long maxLength) => new DiskExtent
        {
            Offset = offset,
            Length = Math.Min(maxLength, Length - offset),
            Type = ClusterType.Normal,
            HostOffset = offset,
        };

        protected internal override void ReadStored(DiskExtent extent, long offset, byte[] buffer, int index, int count) =>
            _file.ReadOrZero(offset, buffer, index, count);

        public override void Write(long offset, byte[] buffer, int index, int count)
        {
            CheckRange(offset, count);
            _file.WriteAt(offset, buffer, index, count);
        }

        public override void WriteZeroes(long offset, long length)
        {
            CheckRange(offset, length);
            var zeros = new byte[(int)Math.Min(length, 1 << 20)];
            for (long done = 0; done < length;)
            {
                int n = (int)Math.Min(zeros.Length, length - done);
                _file.WriteAt(offset + done, zeros, 0, n);
                done += n;
            }
        }

        public override void Flush() => _file.Flush();

        protected override void Dispose(bool disposing) => _file.Dispose();
    }
}
