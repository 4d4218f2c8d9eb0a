using System;
using QcowPS.Engine.IO;

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

        /// <summary>Data runs are Normal; holes of the host file are Zero (as qemu-img map reports them).</summary>
        public override DiskExtent GetExtent(long offset, long maxLength)
        {
            maxLength = Math.Min(maxLength, Length - offset);
            var extent = new DiskExtent { Offset = offset, Length = maxLength, Type = ClusterType.Normal, HostOffset = offset };
            if (_file.TryFindData(offset, out long dataStart, out long dataEnd))
            {
                if (dataStart > offset)
                {
                    extent.Type = ClusterType.Zero;
                    extent.HostOffset = -1;
                    extent.Length = Math.Min(maxLength, dataStart - offset);
                }
                else if (dataEnd > offset)
                    extent.Length = Math.Min(maxLength, dataEnd - offset);
            }
            return extent;
        }

        protected internal override IHostFile StoredDataFile => _file;

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

        /// <summary>
        /// Punches a hole over the range, as QEMU's file driver does for a discard: the range reads as
        /// zeros and its blocks go back to the file system. Where the file system cannot, nothing happens
        /// (a discard may be ignored; QEMU ignores it too).
        /// </summary>
        public override void Discard(long offset, long length)
        {
            CheckRange(offset, length);
            if (!CanWrite) throw new QcowException(QcowErrorKind.ReadOnly, Path, $"'{Path}' is open read-only");
            if (length > 0) _file.TryPunchHole(offset, length);
        }

        public override void Flush() => _file.Flush();

        protected override void Dispose(bool disposing) => _file.Dispose();
    }
}
