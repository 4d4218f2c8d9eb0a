using System;
using System.Collections.Generic;
using QcowPS.Engine.Compression;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    /// <summary>
    /// A qcow2 image (versions 2 and 3) as a virtual disk. The class is split like QEMU's
    /// block/qcow2*.c, each partial with its own fields at its top:
    /// this file opens, reads and closes;
    /// Qcow2Image.ClusterMapping.cs maps guest offsets through L1/L2 (qcow2-cluster.c);
    /// Qcow2Image.Tables.cs decodes L1/L2/refcount tables for Get-QcowTable and Get-QcowCluster;
    /// Qcow2Image.Refcounts.cs reads and updates refcounts, allocates clusters (qcow2-refcount.c);
    /// Qcow2Image.Flush.cs holds the crash-safe flush order and opening/closing for writing;
    /// Qcow2Image.Write.cs is the guest write path: copy on write, subclusters, zeroing;
    /// Qcow2Image.Sequential.cs fills a new image in guest order for conversion;
    /// Qcow2Image.Discard.cs discards; Qcow2Image.Resize.cs resizes;
    /// Qcow2Image.Snapshots.cs handles the snapshot table (qcow2-snapshot.c);
    /// Qcow2Image.Check.cs checks and repairs (qemu-img check);
    /// Qcow2Image.Bitmaps.cs keeps persistent dirty bitmaps (qcow2-bitmap.c).
    /// All public members are serialized by one lock: metadata caches are not thread-safe.
    /// </summary>
    public sealed partial class Qcow2Image : VirtualDisk
    {
        public const ulong L1OffsetMask = 0x00FF_FFFF_FFFF_FE00UL;
        public const ulong L1ReservedMask = 0x7F00_0000_0000_01FFUL;
        public const ulong RefcountTableOffsetMask = 0xFFFF_FFFF_FFFF_FE00UL;

        private readonly object _gate = new object();
        private readonly IHostFile _file;
        private IHostFile _dataFile;
        private readonly MetadataCache _l2Cache;
        private readonly MetadataCache _refcountCache;
        private ulong[] _l1;
        private ulong[] _refcountTable;
        private List<Qcow2Snapshot> _snapshots;
        private readonly bool _writable;

        // The last compressed cluster decompressed, so that reading it piece by piece inflates it once.
        private ClusterCodec _codec;
        private ulong _cachedCompressedEntry;
        private byte[] _compressedClusterData;
        private byte[] _compressedInput;

        public Qcow2Header Header { get; }
        public override string Path => _file.Path;
        public override ImageFormat Format => ImageFormat.Qcow2;
        public override int PieceSize => ClusterSize;
        internal override string RecordedBackingFile => Header.BackingFile;
        internal override string RecordedBackingFormat => Header.BackingFormat;
        public override long Length => (long)Header.Size;
        public override long FileSize => _file.Length;
        public override bool CanWrite => _writable;
        public int ClusterSize => Header.ClusterSize;
        public int ClusterBits => Header.ClusterBits;

        /// <summary>The resolved path of the external data file, or null.</summary>
        public string DataFilePath { get; private set; }

        private Qcow2Image(IHostFile file, Qcow2Header header, bool writable, long l2CacheBytes)
        {
            _file = file;
            _dataFile = file;
            Header = header;
            _writable = writable;
            int cs = header.ClusterSize;
            _l2Cache = new MetadataCache("L2", cs, (int)Math.Max(16, l2CacheBytes / cs), LoadL2Table);
            _refcountCache = new MetadataCache("refcount block", cs, (int)Math.Max(8, (l2CacheBytes / 4) / cs), LoadRefcountBlock);
        }

        /// <summary>Opens a qcow2 image on an open host file; the image owns the file from here on.</summary>
        public static Qcow2Image Open(IHostFile file, OpenOptions options)
        {
            var header = Qcow2Header.Read(file);
            bool writable = options.Writable;
            if (writable && header.IsCorrupt && !options.AllowCorrupt)
            {
                // The corrupt bit forbids writes (spec) until a repair; QEMU refuses read-write opens too.
                throw new QcowException(QcowErrorKind.ReadOnly, file.Path,
                    $"'{file.Path}' is marked corrupt, so it opens read-only; repair it with Repair-QcowImage -All before writing");
            }
            var image = new Qcow2Image(file, header, writable, options.L2CacheBytes);
            try
            {
                image.LoadTables();
                if (header.HasExternalDataFile) image.OpenDataFile(options);
                if (writable) image.PrepareForWriting(options);
            }
            catch
            {
                image.DisposeFiles();
                throw;
            }
            return image;
        }

        private void LoadTables()
        {
            _l1 = ReadL1Table((long)Header.L1TableOffset, Header.L1Size, "active L1 table");
            int rtEntries = (int)((long)Header.RefcountTableClusters * ClusterSize / 8);
            _refcountTable = ReadU64Table((long)Header.RefcountTableOffset, rtEntries, "refcount table");
            _snapshots = Qcow2Snapshot.ReadTable(_file, Header);
        }

        /// <summary>Reads an L1 table; its size was checked against the spec limits and the file already.</summary>
        internal ulong[] ReadL1Table(long offset, uint entries, string what)
        {
            if (entries > Qcow2Header.MaxL1Bytes / 8)
                throw QcowException.Corrupt(Path, $"The {what} has {entries} entries, above QEMU's limit of {Qcow2Header.MaxL1Bytes / 8}");
            if (entries > 0 && (offset % ClusterSize != 0 || offset <= 0))
                throw QcowException.Corrupt(Path, $"The {what} offset 0x{offset:X} is not a valid cluster offset");
            return ReadU64Table(offset, (int)entries, what);
        }

        private ulong[] ReadU64Table(long offset, int entries, string what)
        {
            var table = new ulong[entries];
            if (entries == 0) return table;
            long bytes = (long)entries * 8;
            if (offset < 0 || offset > _file.Length || bytes > _file.Length - offset)
                throw QcowException.Corrupt(Path, $"The {what} at 0x{offset:X} ({bytes} bytes) runs past the end of the file (file size {_file.Length})");
            // Read in slices so a 32 MiB L1 table does not need a second 32 MiB buffer.
            var buffer = new byte[(int)Math.Min(bytes, 1 << 20)];
            for (long done = 0; done < bytes;)
            {
                int n = (int)Math.Min(buffer.Length, bytes - done);
                _file.ReadExactly(offset + done, buffer, 0, n, what);
                int first = (int)(done / 8);
                for (int i = 0; i < n / 8; i++) table[first + i] = BigEndian.U64(buffer, i * 8);
                done += n;
            }
            return table;
        }

        private void OpenDataFile(OpenOptions options)
        {
            string name = Header.DataFile;
            string resolved = BackingResolver.ResolveRelative(Path, name, "external data file");
            DataFilePath = resolved;
            var data = FileHostFile.Open(resolved, _writable, options.Lock);
            _dataFile = options.WrapHostFile != null ? options.WrapHostFile(data) : data;
        }

        public IReadOnlyList<Qcow2Snapshot> Snapshots
        {
            get { lock (_gate) return _snapshots.ToArray(); }
        }

        /// <summary>The active L1 table (a copy).</summary>
        public ulong[] GetL1Table()
        {
            lock (_gate) return (ulong[])_l1.Clone();
        }

        public override DiskExtent GetExtent(long offset, long maxLength)
        {
            lock (_gate)
            {
                ThrowIfDisposed();
                return Map(_l1, offset, Math.Min(maxLength, Length - offset));
            }
        }

        public override void Read(long offset, byte[] buffer, int index, int count)
        {
            if (Header.IsEncrypted)
                throw QcowException.Unsupported(Path, $"The image is encrypted ({(Header.CryptMethod == 1 ? "AES" : "LUKS")}); reading encrypted images is not supported");
            base.Read(offset, buffer, index, count);
        }

        // Encrypted data is not the guest's bytes (and is not read at all).
        protected internal override IHostFile StoredDataFile => Header.IsEncrypted ? null : _dataFile;

        protected internal override void ReadStored(DiskExtent extent, long offset, byte[] buffer, int index, int count)
        {
            // Inflation runs outside the lock (see Qcow2Image.ParallelRead.cs).
            if (extent.Type == ClusterType.Compressed)
            {
                ReadCompressed(extent.L2Raw, offset, buffer, index, count);
                return;
            }
            long host = extent.HostOffset + (offset - extent.Offset);
            IHostFile dataFile;
            lock (_gate)
            {
                ThrowIfDisposed();
                if (!Header.HasExternalDataFile && extent.HostOffset - (extent.HostOffset & (ClusterSize - 1)) >= _file.Length)
                    throw QcowException.Corrupt(Path, $"The L2 entry for guest offset 0x{offset:X} points to host offset 0x{extent.HostOffset:X}, past the end of the file (file size {_file.Length})");
                dataFile = _dataFile;
                // A writable image may move or free this cluster once the lock is let go: read it here.
                // A file may end inside its last cluster (subcluster writes, files not padded): the rest reads as zeros.
                if (_writable) { dataFile.ReadOrZero(host, buffer, index, count); return; }
            }
            // A read-only image's clusters stay where they are, and the file reads positionally, so reads
            // of independent ranges need not take turns.
            dataFile.ReadOrZero(host, buffer, index, count);
        }

        /// <summary>Inflates one compressed cluster (the last one is cached).</summary>
        private byte[] DecompressCluster(ulong l2Raw, long guestOffset)
        {
            if (_compressedClusterData != null && _cachedCompressedEntry == l2Raw) return _compressedClusterData;
            var entry = new L2Entry(l2Raw, 0, ClusterBits, false, false);
            long coffset = entry.CompressedOffset;
            int csize = entry.CompressedSize;
            if (coffset >= _file.Length)
                throw QcowException.Corrupt(Path, $"The compressed cluster for guest offset 0x{guestOffset:X} lies at host offset 0x{coffset:X}, past the end of the file (file size {_file.Length})");
            if (_compressedInput == null || _compressedInput.Length < csize) _compressedInput = new byte[Math.Max(csize, ClusterSize * 2)];
            // The last compressed cluster's sector range may run past the end of the file: use what is there.
            int available = (int)Math.Min(csize, _file.Length - coffset);
            _file.ReadExactly(coffset, _compressedInput, 0, available, "compressed cluster");
            if (_compressedClusterData == null) _compressedClusterData = new byte[ClusterSize];
            if (_codec == null) _codec = ClusterCodec.Create(Header.CompressionType);
            _cachedCompressedEntry = 0;
            if (!_codec.Decompress(_compressedInput, available, _compressedClusterData, ClusterSize))
                throw QcowException.Corrupt(Path, $"The compressed cluster for guest offset 0x{guestOffset:X} at host offset 0x{coffset:X} ({csize} bytes) is not a valid {(Header.CompressionType == Qcow2CompressionType.Zstd ? "zstd" : "deflate")} stream of one cluster");
            _cachedCompressedEntry = l2Raw;
            return _compressedClusterData;
        }

        /// <summary>Reads the raw bytes of a compressed cluster's stream, for callers that inflate on other threads.</summary>
        public int ReadCompressedStream(ulong l2Raw, byte[] buffer)
        {
            lock (_gate)
            {
                var entry = new L2Entry(l2Raw, 0, ClusterBits, false, false);
                long coffset = entry.CompressedOffset;
                if (coffset >= _file.Length)
                    throw QcowException.Corrupt(Path, $"The compressed cluster at host offset 0x{coffset:X} lies past the end of the file (file size {_file.Length})");
                int available = (int)Math.Min(Math.Min(entry.CompressedSize, buffer.Length), _file.Length - coffset);
                _file.ReadExactly(coffset, buffer, 0, available, "compressed cluster");
                return available;
            }
        }

        /// <summary>The snapshot with this ID or name (ID first, as qemu-img does), or null.</summary>
        public Qcow2Snapshot FindSnapshot(string idOrName)
        {
            lock (_gate)
            {
                foreach (var s in _snapshots) if (s.Id == idOrName) return s;
                foreach (var s in _snapshots) if (s.Name == idOrName) return s;
                return null;
            }
        }

        /// <summary>A read-only view of a snapshot's data (its own L1 table and disk size, this image's backing file).</summary>
        public VirtualDisk OpenSnapshot(string idOrName)
        {
            var snapshot = FindSnapshot(idOrName) ??
                throw new QcowException(QcowErrorKind.SnapshotNotFound, Path, $"Snapshot '{idOrName}' does not exist in '{Path}'");
            ulong[] l1;
            lock (_gate) l1 = ReadL1Table(snapshot.L1TableOffset, snapshot.L1Size, $"L1 table of snapshot '{snapshot.Name}'");
            long size = (long)(snapshot.DiskSize ?? Header.Size);
            ulong needed = Qcow2Header.L1EntriesFor((ulong)size, ClusterBits, Header.HasExtendedL2);
            if (needed > snapshot.L1Size)
                throw QcowException.Corrupt(Path, $"Snapshot '{snapshot.Name}' has an L1 table of {snapshot.L1Size} entries, too small for its disk size {size}");
            return new Qcow2SnapshotView(this, snapshot, l1, size);
        }

        internal DiskExtent MapWith(ulong[] l1, long offset, long maxLength)
        {
            lock (_gate)
            {
                ThrowIfDisposed();
                return Map(l1, offset, maxLength);
            }
        }

        protected override void Dispose(bool disposing)
        {
            lock (_gate)
            {
                try
                {
                    if (_writable) CloseForWriting();
                }
                finally
                {
                    DisposeFiles();
                }
            }
        }

        private void DisposeFiles()
        {
            _codec?.Dispose();
            _codec = null;
            DisposeInflaters();
            if (_dataFile != null && !ReferenceEquals(_dataFile, _file)) _dataFile.Dispose();
            _file.Dispose();
        }
    }

}
