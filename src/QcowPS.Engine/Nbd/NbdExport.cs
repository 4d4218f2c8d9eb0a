using System;
using System.Collections.Generic;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine.Nbd
{
    /// <summary>
    /// One disk a server exports under a name: the open image (or snapshot view), whether clients may
    /// write, and the answers the protocol needs from it (transmission flags, metadata contexts and
    /// their extents). The export owns the disks it is given and closes them when disposed.
    /// </summary>
    public sealed class NbdExport : IDisposable
    {
        private readonly VirtualDisk _owner;
        private long _bytesRead;
        private long _bytesWritten;

        /// <param name="name">The export name clients ask for ("" is the default export).</param>
        /// <param name="disk">The disk served: the image, or a snapshot view of it.</param>
        /// <param name="owner">What to dispose along with the disk (the image behind a snapshot view), or null.</param>
        public NbdExport(string name, VirtualDisk disk, bool readOnly, string description = null, VirtualDisk owner = null)
        {
            if (name == null) throw new ArgumentNullException(nameof(name));
            if (System.Text.Encoding.UTF8.GetByteCount(name) > NbdProtocol.MaxStringLength)
                throw new QcowException(QcowErrorKind.InvalidArgument, disk?.Path, $"The export name '{name}' is longer than the protocol's {NbdProtocol.MaxStringLength} bytes");
            Name = name;
            Disk = disk ?? throw new ArgumentNullException(nameof(disk));
            ReadOnly = readOnly || !disk.CanWrite;
            Description = description;
            _owner = owner;
            MetaContexts = ContextsOf(Disk);
        }

        public string Name { get; }
        public string Description { get; }
        public VirtualDisk Disk { get; }
        public bool ReadOnly { get; }
        public long Size => Disk.Length;
        public long BytesRead => System.Threading.Interlocked.Read(ref _bytesRead);
        public long BytesWritten => System.Threading.Interlocked.Read(ref _bytesWritten);

        internal void CountRead(long n) => System.Threading.Interlocked.Add(ref _bytesRead, n);
        internal void CountWritten(long n) => System.Threading.Interlocked.Add(ref _bytesWritten, n);

        /// <summary>
        /// The transmission flags, as qemu-nbd advertises them for the same kind of export. Multi-conn is
        /// honest here: every connection shares this one disk object, so a flush or FUA write on one
        /// connection is visible to all of them.
        /// </summary>
        public ushort TransmissionFlags(bool structuredReplies, bool multiConnection)
        {
            ushort flags = NbdProtocol.FlagHasFlags | NbdProtocol.FlagSendFlush | NbdProtocol.FlagSendFua | NbdProtocol.FlagSendCache;
            if (ReadOnly) flags |= NbdProtocol.FlagReadOnly;
            else flags |= NbdProtocol.FlagSendTrim | NbdProtocol.FlagSendWriteZeroes | NbdProtocol.FlagSendFastZero;
            if (structuredReplies) flags |= NbdProtocol.FlagSendDf;
            if (multiConnection) flags |= NbdProtocol.FlagCanMultiConn;
            return flags;
        }

        /// <summary>
        /// The metadata contexts this export offers: base:allocation, qemu:allocation-depth, and a
        /// qemu:dirty-bitmap:NAME for each usable persistent bitmap of a qcow2 image served as it is
        /// now (a snapshot has no bitmaps). qemu-nbd offers only the bitmaps named with -B; offering
        /// all of them costs nothing, and a client asks for the ones it wants by name.
        /// </summary>
        public IReadOnlyList<string> MetaContexts { get; }

        private static IReadOnlyList<string> ContextsOf(VirtualDisk disk)
        {
            var contexts = new List<string> { NbdProtocol.ContextBaseAllocation, NbdProtocol.ContextQemuAllocationDepth };
            if (disk is Qcow2Image image)
            {
                foreach (var bitmap in image.Bitmaps)
                {
                    // A bitmap left in use by a writer that did not close, or one QEMU could not use, has no
                    // trustworthy contents: it is not offered.
                    if (bitmap.InUse || bitmap.Unusable != null) continue;
                    contexts.Add(NbdProtocol.ContextQemuDirtyBitmapPrefix + bitmap.Name);
                }
            }
            return contexts;
        }

        /// <summary>
        /// The contexts a LIST/SET_META_CONTEXT query selects: an exact name, or for LIST a namespace
        /// ("base:", "qemu:") that stands for all of its contexts.
        /// </summary>
        public IEnumerable<string> MatchMetaContexts(string query, bool listing)
        {
            foreach (var context in MetaContexts)
            {
                if (context == query) yield return context;
                else if (listing && query.EndsWith(":", StringComparison.Ordinal) && context.StartsWith(query, StringComparison.Ordinal))
                    yield return context;
            }
        }

        /// <summary>
        /// The run at offset as one metadata context sees it: its length (at most maxLength) and its
        /// 32-bit status. Answered from the format's tables; no data is read.
        /// </summary>
        public (long length, uint status) ContextExtent(string context, long offset, long maxLength)
        {
            if (context.StartsWith(NbdProtocol.ContextQemuDirtyBitmapPrefix, StringComparison.Ordinal))
                return BitmapExtent(context.Substring(NbdProtocol.ContextQemuDirtyBitmapPrefix.Length), offset, maxLength);
            // One run as long as the status stays the same (QEMU answers with whole runs, not table-sized
            // pieces), so clients see the same extents from us as from qemu-nbd.
            uint status = ContextStatus(context, Disk.GetChainExtent(offset, maxLength), out long length);
            while (length < maxLength)
            {
                uint next = ContextStatus(context, Disk.GetChainExtent(offset + length, maxLength - length), out long more);
                if (next != status) break;
                length += more;
            }
            return (length, status);
        }

        private readonly Dictionary<string, IReadOnlyList<QcowBitmapExtent>> _bitmapRuns = new Dictionary<string, IReadOnlyList<QcowBitmapExtent>>(StringComparer.Ordinal);

        /// <summary>
        /// The dirty or clean run of a persistent bitmap at offset (status NBD_STATE_DIRTY or 0), as
        /// qemu-nbd -B reports it. A read-only export's bitmaps cannot change, so their runs are read once.
        /// </summary>
        private (long length, uint status) BitmapExtent(string name, long offset, long maxLength)
        {
            var image = (Qcow2Image)Disk;
            IReadOnlyList<QcowBitmapExtent> runs;
            if (ReadOnly)
            {
                lock (_bitmapRuns)
                {
                    if (!_bitmapRuns.TryGetValue(name, out runs)) _bitmapRuns[name] = runs = image.GetBitmapExtents(name);
                }
            }
            else runs = image.GetBitmapExtents(name, offset, maxLength);
            int lo = 0, hi = runs.Count - 1;
            while (lo < hi)
            {
                int mid = (lo + hi + 1) / 2;
                if (runs[mid].Offset <= offset) lo = mid; else hi = mid - 1;
            }
            if (runs.Count == 0 || runs[lo].Offset > offset || runs[lo].Offset + runs[lo].Length <= offset)
                return (maxLength, 0u);
            var run = runs[lo];
            long length = Math.Min(maxLength, run.Offset + run.Length - offset);
            return (length, run.Dirty ? NbdProtocol.StateDirty : 0u);
        }

        private static uint ContextStatus(string context, ChainExtent extent, out long length)
        {
            length = Math.Max(1, extent.Length);
            if (context == NbdProtocol.ContextQemuAllocationDepth)
            {
                if (extent.Present) return (uint)(extent.Depth + 1);
                // Past the end of a shorter backing file QEMU counts the zeros as allocated in that backing
                // layer (bdrv_co_common_block_status_above: "zeroes that we synthesize beyond EOF behave as
                // if they were allocated at this layer"); GetChainExtent stops at the layer above it.
                return extent.Layer?.Backing != null ? (uint)(extent.Depth + 2) : 0u;
            }
            // base:allocation as QEMU answers it: data is allocated; a zero cluster or an unallocated
            // run at the bottom of the chain is a hole that reads as zeros.
            bool data = extent.Type == ClusterType.Normal || extent.Type == ClusterType.Compressed;
            return data ? 0u : NbdProtocol.StateHole | NbdProtocol.StateZero;
        }

        /// <summary>
        /// Splits [offset, offset+length) into runs that hold data and runs that read as zeros without
        /// being read (for OFFSET_HOLE chunks). Adjacent runs of one kind are merged.
        /// </summary>
        public List<(long offset, long length, bool data)> DataRuns(long offset, long length)
        {
            var runs = new List<(long, long, bool)>();
            long end = offset + length;
            for (long pos = offset; pos < end;)
            {
                var e = Disk.GetChainExtent(pos, end - pos);
                long n = Math.Max(1, Math.Min(e.Length, end - pos));
                bool data = e.Type == ClusterType.Normal || e.Type == ClusterType.Compressed;
                if (runs.Count > 0 && runs[runs.Count - 1].Item3 == data)
                {
                    var last = runs[runs.Count - 1];
                    runs[runs.Count - 1] = (last.Item1, last.Item2 + n, data);
                }
                else runs.Add((pos, n, data));
                pos += n;
            }
            return runs;
        }

        public void Dispose()
        {
            try { Disk.Dispose(); }
            finally { if (_owner != null && !ReferenceEquals(_owner, Disk)) _owner.Dispose(); }
        }
    }
}
