using System;
using System.Collections.Generic;
using QcowPS.Engine.Compression;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    // Reads that do their slow part outside the image's lock, so that an NBD server's (or any other
    // caller's) reads of independent ranges run in parallel: the compressed bytes are copied under the
    // lock and inflated outside it; a read-only image, whose clusters cannot move, is read outside it.
    public sealed partial class Qcow2Image
    {
        /// <summary>Inflaters not in use; taken and given back under _gate.</summary>
        private readonly Stack<ClusterInflater> _idleInflaters = new Stack<ClusterInflater>();

        private void ReadCompressed(ulong l2Raw, long offset, byte[] buffer, int index, int count)
        {
            int within = (int)(offset & (ClusterSize - 1));
            ClusterInflater inflater;
            int available;
            lock (_gate)
            {
                ThrowIfDisposed();
                if (_compressedClusterData != null && _cachedCompressedEntry == l2Raw)
                {
                    Array.Copy(_compressedClusterData, within, buffer, index, count);
                    return;
                }
                inflater = _idleInflaters.Count > 0 ? _idleInflaters.Pop() : new ClusterInflater(ClusterCodec.Create(Header.CompressionType), ClusterSize);
                try { available = ReadCompressedBytes(l2Raw, offset, inflater.Input); }
                catch { _idleInflaters.Push(inflater); throw; }
            }
            try
            {
                // A whole cluster is inflated straight into the caller's buffer; a piece goes through the
                // inflater's own buffer and is kept as the cached cluster for the pieces that follow it.
                bool whole = within == 0 && count == ClusterSize;
                if (!inflater.Codec.Decompress(inflater.Input, available, whole ? buffer : inflater.Output, whole ? index : 0, ClusterSize, out _))
                    throw QcowException.Corrupt(Path, $"The compressed cluster for guest offset 0x{offset:X} ({available} bytes) is not a valid {(Header.CompressionType == Qcow2CompressionType.Zstd ? "zstd" : "deflate")} stream of one cluster");
                if (whole) return;
                Array.Copy(inflater.Output, within, buffer, index, count);
                lock (_gate)
                {
                    if (_compressedClusterData == null) _compressedClusterData = new byte[ClusterSize];
                    Array.Copy(inflater.Output, _compressedClusterData, ClusterSize);
                    _cachedCompressedEntry = l2Raw;
                }
            }
            finally
            {
                lock (_gate)
                {
                    if (IsDisposed) inflater.Dispose();
                    else _idleInflaters.Push(inflater);
                }
            }
        }

        /// <summary>Copies a compressed cluster's stream into input (under _gate); returns its length.</summary>
        private int ReadCompressedBytes(ulong l2Raw, long guestOffset, byte[] input)
        {
            var entry = new L2Entry(l2Raw, 0, ClusterBits, false, false);
            long coffset = entry.CompressedOffset;
            if (coffset >= _file.Length)
                throw QcowException.Corrupt(Path, $"The compressed cluster for guest offset 0x{guestOffset:X} lies at host offset 0x{coffset:X}, past the end of the file (file size {_file.Length})");
            // The last compressed cluster's sector range may run past the end of the file: use what is there.
            int available = (int)Math.Min(Math.Min(entry.CompressedSize, input.Length), _file.Length - coffset);
            _file.ReadExactly(coffset, input, 0, available, "compressed cluster");
            return available;
        }

        private void DisposeInflaters()
        {
            while (_idleInflaters.Count > 0) _idleInflaters.Pop().Dispose();
        }
    }
}
