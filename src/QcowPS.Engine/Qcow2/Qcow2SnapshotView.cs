using System;
using System.Collections.Generic;
using QcowPS.Engine.Compression;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    /// <summary>A snapshot's data, read-only, through the image's caches.</summary>
    internal sealed class Qcow2SnapshotView : VirtualDisk
    {
        private readonly Qcow2Image _image;
        private readonly ulong[] _l1;
        private readonly long _length;

        public Qcow2Snapshot Snapshot { get; }
        public int ClusterSize => _image.ClusterSize;
        public Qcow2Image Image => _image;

        public Qcow2SnapshotView(Qcow2Image image, Qcow2Snapshot snapshot, ulong[] l1, long length)
        {
            _image = image;
            Snapshot = snapshot;
            _l1 = l1;
            _length = length;
            Backing = image.Backing;
        }

        public override string Path => _image.Path;
        public override ImageFormat Format => ImageFormat.Qcow2;
        public override int PieceSize => ClusterSize;
        public override long Length => _length;
        public override long FileSize => _image.FileSize;
        protected override bool OwnsBacking => false;

        public override DiskExtent GetExtent(long offset, long maxLength) =>
            _image.MapWith(_l1, offset, Math.Min(maxLength, _length - offset));

        protected internal override IHostFile StoredDataFile => _image.StoredDataFile;

        protected internal override void ReadStored(DiskExtent extent, long offset, byte[] buffer, int index, int count) =>
            _image.ReadStored(extent, offset, buffer, index, count);

        public override void Read(long offset, byte[] buffer, int index, int count)
        {
            if (_image.Header.IsEncrypted)
                throw QcowException.Unsupported(Path, "The image is encrypted; reading encrypted images is not supported");
            base.Read(offset, buffer, index, count);
        }
    }
}
