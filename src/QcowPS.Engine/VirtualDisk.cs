using System;
using System.Collections.Generic;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine
{
    /// <summary>
    /// One virtual disk: a format turning a host file into guest bytes, over an optional backing disk.
    /// The one interface for qcow2, QED and raw, so that chains mix formats and operations
    /// (conversion, comparison, check) are written once.
    /// </summary>
    public abstract class VirtualDisk : IDisposable
    {
        private bool _disposed;

        public abstract string Path { get; }
        public abstract ImageFormat Format { get; }

        /// <summary>Virtual size in bytes.</summary>
        public abstract long Length { get; }

        /// <summary>The backing disk (owned: disposed with this one), or null.</summary>
        public VirtualDisk Backing { get; internal set; }

        public virtual bool CanWrite => false;

        /// <summary>The unit reads of this disk are pieced in: its cluster size (a format without clusters: 64 KiB).</summary>
        public virtual int PieceSize => 65536;

        /// <summary>The backing file name this image records, as stored (null when it has none).</summary>
        internal virtual string RecordedBackingFile => null;

        /// <summary>The backing format this image records (null when it records none: the backing file is probed).</summary>
        internal virtual string RecordedBackingFormat => null;

        /// <summary>Host file size in bytes.</summary>
        public abstract long FileSize { get; }

        /// <summary>
        /// The run starting at offset in this layer only (never longer than maxLength nor past Length).
        /// </summary>
        public abstract DiskExtent GetExtent(long offset, long maxLength);

        /// <summary>
        /// The host file whose bytes at a Normal extent's HostOffset are the guest bytes as they are, so
        /// that a conversion can have the kernel copy them; null when this layer has no such file.
        /// </summary>
        protected internal virtual IO.IHostFile StoredDataFile => null;

        /// <summary>Reads bytes of a Normal or Compressed extent of this layer.</summary>
        protected internal abstract void ReadStored(DiskExtent extent, long offset, byte[] buffer, int index, int count);

        /// <summary>Reads guest bytes, resolving the backing chain (bytes past a shorter backing disk read as zeros).</summary>
        public virtual void Read(long offset, byte[] buffer, int index, int count)
        {
            CheckRange(offset, count);
            while (count > 0)
            {
                var extent = GetExtent(offset, count);
                int n = (int)Math.Min(extent.Length, count);
                if (n <= 0) throw new InvalidOperationException($"{Format} layer returned an empty extent at {offset}");
                switch (extent.Type)
                {
                    case ClusterType.Normal:
                    case ClusterType.Compressed:
                        ReadStored(extent, offset, buffer, index, n);
                        break;
                    case ClusterType.Zero:
                    case ClusterType.ZeroAllocated:
                        Array.Clear(buffer, index, n);
                        break;
                    default:
                        ReadBacking(offset, buffer, index, n);
                        break;
                }
                offset += n;
                index += n;
                count -= n;
            }
        }

        /// <summary>Reads what the backing disk has for a range this layer leaves unallocated.</summary>
        protected void ReadBacking(long offset, byte[] buffer, int index, int count)
        {
            long available = Backing == null ? 0 : Math.Max(0, Math.Min(count, Backing.Length - offset));
            if (available > 0) Backing.Read(offset, buffer, index, (int)available);
            if (available < count) Array.Clear(buffer, index + (int)available, count - (int)available);
        }

        /// <summary>The run at offset as the chain resolves it (what qemu-img map reports).</summary>
        public ChainExtent GetChainExtent(long offset, long maxLength)
        {
            maxLength = Math.Min(maxLength, Length - offset);
            VirtualDisk layer = this;
            int depth = 0;
            while (true)
            {
                var e = layer.GetExtent(offset, maxLength);
                maxLength = Math.Min(maxLength, e.Length);
                if (e.Type != ClusterType.Unallocated || layer.Backing == null || offset >= layer.Backing.Length)
                {
                    return new ChainExtent
                    {
                        Offset = offset, Length = maxLength, Type = e.Type, Depth = depth,
                        HostOffset = e.HostOffset, L2Raw = e.L2Raw, Layer = layer,
                    };
                }
                maxLength = Math.Min(maxLength, layer.Backing.Length - offset);
                layer = layer.Backing;
                depth++;
            }
        }

        /// <summary>
        /// Where the run from offset that no layer of the chain stores ends, at most limit: a range that
        /// reads as zeros without being read (unallocated or zero everywhere, or past this disk's end).
        /// Conversion and comparison pass over such runs in one step.
        /// </summary>
        public long EndOfUnstoredRun(long offset, long limit)
        {
            long pos = offset;
            while (pos < limit && pos < Length)
            {
                var e = GetChainExtent(pos, Math.Min(limit, Length) - pos);
                if (e.Type == ClusterType.Normal || e.Type == ClusterType.Compressed || e.Length <= 0) return pos;
                pos += e.Length;
            }
            return Math.Max(pos, limit);  // past the end a disk reads zeros
        }

        /// <summary>
        /// The dirty and clean runs of a persistent dirty bitmap over the whole disk, in order, merged:
        /// what an incremental backup copies. A qcow2 image answers from its own bitmap, an NBD export
        /// from the qemu:dirty-bitmap:NAME context; a missing, stale or unusable bitmap throws now, not
        /// when the runs are enumerated. Formats without persistent bitmaps throw.
        /// </summary>
        public virtual IEnumerable<QcowBitmapExtent> GetDirtyExtents(string bitmap) =>
            throw new QcowException(QcowErrorKind.InvalidArgument, Path,
                $"'{Path}' is a {ImageFormats.QemuName(Format)} image, which has no persistent bitmaps (bitmap '{bitmap}' needs a qcow2 image or an NBD export that offers it)");

        public virtual void Write(long offset, byte[] buffer, int index, int count) =>
            throw new QcowException(QcowErrorKind.ReadOnly, Path, $"'{Path}' is open read-only");

        /// <summary>Makes a range read as zeros (deallocating where the format and backing chain allow).</summary>
        public virtual void WriteZeroes(long offset, long length) =>
            throw new QcowException(QcowErrorKind.ReadOnly, Path, $"'{Path}' is open read-only");

        public virtual void Flush() { }

        /// <summary>
        /// Gives a range back (NBD TRIM, qemu-io discard): what it reads afterwards is unspecified, so a
        /// format may ignore the request. Formats that can deallocate override this.
        /// </summary>
        public virtual void Discard(long offset, long length)
        {
            CheckRange(offset, length);
            if (!CanWrite) throw new QcowException(QcowErrorKind.ReadOnly, Path, $"'{Path}' is open read-only");
        }

        /// <summary>Whether WriteZeroes of this range changes only metadata (NBD FAST_ZERO): no zeros are written out.</summary>
        public virtual bool CanWriteZeroesFast(long offset, long length) => false;

        protected void CheckRange(long offset, long count)
        {
            if (offset < 0 || count < 0 || offset > Length || count > Length - offset)
                throw new QcowException(QcowErrorKind.InvalidArgument, Path,
                    $"The range at offset {offset} of {count} bytes lies outside the virtual disk of {Length} bytes ('{Path}')");
        }

        /// <summary>True once Dispose has begun.</summary>
        protected bool IsDisposed => _disposed;

        protected void ThrowIfDisposed()
        {
            if (_disposed) throw new ObjectDisposedException(GetType().Name, $"'{Path}' is closed");
        }

        protected virtual void Dispose(bool disposing) { }

        /// <summary>False for views (snapshots) that borrow their image's backing disk.</summary>
        protected virtual bool OwnsBacking => true;

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            try { Dispose(true); }
            finally { if (OwnsBacking) Backing?.Dispose(); }
        }
    }
}
