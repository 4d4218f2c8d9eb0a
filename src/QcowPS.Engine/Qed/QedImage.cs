using System;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qed
{
    /// <summary>A QED image, read-only (an input format): two-level tables, zero and unallocated clusters.</summary>
    public sealed class QedImage : VirtualDisk
    {
        private readonly object _gate = new object();
        private readonly IHostFile _file;
        private readonly ulong[] _l1;
        private readonly MetadataCache _l2Cache;

        public QedHeader Header { get; }
        public override string Path => _file.Path;
        public override ImageFormat Format => ImageFormat.Qed;
        public override int PieceSize => (int)Header.ClusterSize;
        internal override string RecordedBackingFile => Header.BackingFile;
        internal override string RecordedBackingFormat => Header.BackingIsRaw ? "raw" : null;
        public override long Length => (long)Header.ImageSize;
        public override long FileSize => _file.Length;

        private QedImage(IHostFile file, QedHeader header, long cacheBytes)
        {
            _file = file;
            Header = header;
            int tableBytes = (int)header.TableBytes;
            _l1 = ReadTable((long)header.L1TableOffset, new byte[tableBytes]);
            _l2Cache = new MetadataCache("QED L2", tableBytes, (int)Math.Max(4, cacheBytes / tableBytes), LoadL2);
        }

        public static QedImage Open(IHostFile file, OpenOptions options)
        {
            var header = QedHeader.Read(file);
            if (options.Writable)
                throw new QcowException(QcowErrorKind.WrongFormat, file.Path, $"'{file.Path}' is a qed image, which QcowPS reads but does not write (convert it to qcow2 to write)");
            return new QedImage(file, header, options.L2CacheBytes);
        }

        private ulong[] ReadTable(long offset, byte[] buffer)
        {
            _file.ReadExactly(offset, buffer, 0, buffer.Length, "QED table");
            var table = new ulong[buffer.Length / 8];
            for (int i = 0; i < table.Length; i++) table[i] = LittleEndian.U64(buffer, i * 8);
            return table;
        }

        private byte[] LoadL2(long offset, byte[] buffer)
        {
            if (offset % Header.ClusterSize != 0)
                throw QcowException.Corrupt(Path, $"QED L2 table offset 0x{offset:X} is not cluster aligned");
            _file.ReadExactly(offset, buffer, 0, buffer.Length, "QED L2 table");
            return buffer;
        }

        public override DiskExtent GetExtent(long offset, long maxLength)
        {
            lock (_gate)
            {
                ThrowIfDisposed();
                maxLength = Math.Min(maxLength, Length - offset);
                long cs = Header.ClusterSize;
                long entries = Header.TableEntries;
                long cluster = offset / cs;
                long l1Index = cluster / entries;
                long tableSpan = entries * cs;
                long tableEnd = (l1Index + 1) * tableSpan;
                maxLength = Math.Min(maxLength, tableEnd - offset);
                var result = new DiskExtent { Offset = offset, Length = maxLength, Type = ClusterType.Unallocated, HostOffset = -1 };
                if (l1Index >= _l1.Length || _l1[l1Index] == 0) return result;
                var table = _l2Cache.Get((long)_l1[l1Index]);
                long pos = offset, end = offset + maxLength;
                bool first = true;
                while (pos < end)
                {
                    long ci = pos / cs;
                    ulong raw = LittleEndian.U64(table, (int)(ci % entries) * 8);
                    ClusterType type;
                    long host = -1;
                    if (raw == 0) type = ClusterType.Unallocated;
                    else if (raw == 1) type = ClusterType.Zero;
                    else
                    {
                        if (raw % (ulong)cs != 0)
                            throw QcowException.Corrupt(Path, $"QED data cluster offset 0x{raw:X} is not cluster aligned");
                        type = ClusterType.Normal;
                        host = (long)raw + (pos % cs);
                    }
                    if (first)
                    {
                        first = false;
                        result.Type = type;
                        result.HostOffset = host;
                    }
                    else if (type != result.Type || (type == ClusterType.Normal && host != result.HostOffset + (pos - offset)))
                        break;
                    pos = Math.Min(end, (ci + 1) * cs);
                }
                result.Length = pos - offset;
                return result;
            }
        }

        protected internal override IHostFile StoredDataFile => _file;

        protected internal override void ReadStored(DiskExtent extent, long offset, byte[] buffer, int index, int count)
        {
            lock (_gate)
            {
                long host = extent.HostOffset + (offset - extent.Offset);
                if (extent.HostOffset >= _file.Length)
                    throw QcowException.Corrupt(Path, $"QED data cluster for guest offset 0x{offset:X} lies past the end of the file");
                _file.ReadOrZero(host, buffer, index, count);
            }
        }

        protected override void Dispose(bool disposing) => _file.Dispose();
    }
}
