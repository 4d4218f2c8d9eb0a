using System;

namespace QcowPS.Engine.Qcow2
{
    // Filling a new image in guest order (conversion): whole clusters at a time, data in large
    // contiguous writes, compressed streams packed back to back (QEMU: qcow2_alloc_bytes).
    public sealed partial class Qcow2Image
    {
        /// <summary>Next free byte in the host cluster compressed streams are being packed into (0: none).</summary>
        private long _compressedTail;

        /// <summary>Compressed streams gathered for one contiguous write.</summary>
        private byte[] _packBuffer;

        /// <summary>
        /// Ends a conversion: metadata written in the usual order; without sync the fsyncs between the
        /// steps are left out (the file only appears under its name once complete, and qemu-img
        /// convert does not flush either), with sync everything is durable before the rename.
        /// </summary>
        internal void FlushForConversion(bool sync)
        {
            lock (_gate)
            {
                _skipFsync = !sync;
                try
                {
                    FlushMetadata();
                    StoreBitmapsOnClose();  // bitmaps copied into the destination (-Bitmaps)
                    if (sync) SyncFile();
                    _closedForWriting = true;  // nothing left for Dispose to write
                }
                finally
                {
                    _skipFsync = false;
                }
            }
        }

        /// <summary>Where a run of new data clusters goes in the host file: the caller writes it there.</summary>
        internal struct HostWrite
        {
            public long HostOffset;
            public int BufferOffset;
            public int Length;
        }

        /// <summary>The file that holds guest data (the image itself, or its external data file).</summary>
        internal IO.IHostFile DataFile => _dataFile;

        /// <summary>
        /// Places count whole guest clusters starting at guestCluster in new contiguous host clusters:
        /// allocates them and points the L2 entries at them, and lists the data writes for the caller
        /// to do, so that a conversion can hand the data to other threads while it maps the next chunk. Only for a new image being filled in
        /// guest order: nothing reads those clusters before the conversion has waited for its writes.
        /// </summary>
        internal void MapNewClusters(long guestCluster, int offset, int count, System.Collections.Generic.List<HostWrite> writes)
        {
            lock (_gate)
            {
                ThrowIfReadOnly();
                int cs = ClusterSize;
                long l2Entries = Header.L2Entries;
                while (count > 0)
                {
                    long l1Index = guestCluster / l2Entries;
                    int l2Index = (int)(guestCluster % l2Entries);
                    int n = (int)Math.Min(count, l2Entries - l2Index);
                    var (table, l2Offset) = L2TableForWrite(l1Index);
                    long host = Header.HasExternalDataFile ? guestCluster << ClusterBits : AllocateClusters(n);
                    writes.Add(new HostWrite { HostOffset = host, BufferOffset = offset, Length = n * cs });
                    ulong bitmap = Header.HasExtendedL2 ? 0xFFFF_FFFFUL : 0;
                    for (int j = 0; j < n; j++)
                    {
                        ReleaseEntry(ReadL2Entry(table, l2Index + j));
                        SetL2Entry(table, l2Offset, l2Index + j, (ulong)(host + ((long)j << ClusterBits)) | L2Entry.CopiedFlag, bitmap);
                    }
                    guestCluster += n;
                    offset += n * cs;
                    count -= n;
                }
            }
        }

        /// <summary>
        /// Stores count consecutive compressed clusters (streams[first..first+count)), packed back to back;
        /// the streams that land contiguously in the file go out in one write.
        /// </summary>
        internal void WriteCompressedClusters(long guestCluster, byte[][] streams, int[] lengths, int first, int count)
        {
            lock (_gate)
            {
                ThrowIfReadOnly();
                if (Header.HasExternalDataFile)
                    throw QcowException.Unsupported(Path, "Images with an external data file cannot hold compressed clusters");
                int total = 0;
                for (int i = first; i < first + count; i++) total += lengths[i];
                if (_packBuffer == null || _packBuffer.Length < total) _packBuffer = new byte[Math.Max(total, ClusterSize * 16)];
                long runStart = -1;
                int runLength = 0;
                int shift = L2Entry.CompressedSizeShift(ClusterBits);
                for (int i = first; i < first + count; i++)
                {
                    long g = guestCluster + (i - first);
                    var (table, l2Offset) = L2TableForWrite(g / Header.L2Entries);
                    int l2Index = (int)(g % Header.L2Entries);
                    int length = lengths[i];
                    long offset = AllocateBytes(length);
                    if (runStart >= 0 && offset != runStart + runLength)
                    {
                        _file.WriteAt(runStart, _packBuffer, 0, runLength);
                        runStart = -1;
                        runLength = 0;
                    }
                    if (runStart < 0) runStart = offset;
                    Array.Copy(streams[i], 0, _packBuffer, runLength, length);
                    runLength += length;
                    long sectors = ((offset + length - 1) >> 9) - (offset >> 9) + 1;
                    ulong entry = L2Entry.CompressedFlag | ((ulong)(sectors - 1) << shift) | (ulong)offset;
                    ReleaseEntry(ReadL2Entry(table, l2Index));
                    SetL2Entry(table, l2Offset, l2Index, entry, 0);
                }
                if (runStart >= 0) _file.WriteAt(runStart, _packBuffer, 0, runLength);
            }
        }

        /// <summary>
        /// Byte-granular allocation for compressed streams: continue in the current host cluster, spill
        /// into the next one when it is free and contiguous, else start a new run. Every host cluster
        /// a stream touches gains one reference (one per user).
        /// </summary>
        private long AllocateBytes(int length)
        {
            int cs = ClusterSize;
            long tail = _compressedTail;
            // A host cluster takes another stream only while its refcount has room for one more user
            // (narrow refcount widths fill up: then a new run starts, as qemu-img does).
            if (tail != 0 && (tail & (cs - 1)) != 0 && CanAddReference(tail >> ClusterBits))
            {
                long current = tail >> ClusterBits;
                int free = (int)(cs - (tail & (cs - 1)));
                if (length <= free)
                {
                    ChangeRefcount(current, +1);
                    _compressedTail = tail + length;
                    return tail;
                }
                int more = (length - free + cs - 1) / cs;
                long next = FindFreeClusters(more);
                try
                {
                    if (next == current + 1)
                    {
                        ChangeRefcount(current, +1);
                        for (long c = next; c < next + more; c++) ChangeRefcount(c, +1);
                        if (_freeClusterHint == next) _freeClusterHint = next + more;
                        _compressedTail = tail + length;
                        return tail;
                    }
                }
                finally
                {
                    for (long c = next; c < next + more; c++) _reservedClusters.Remove(c);
                }
            }
            long start = AllocateClusters((length + cs - 1) / cs);
            _compressedTail = start + length;
            return start;
        }
    }
}
