using System;
using System.Collections.Generic;

namespace QcowPS.Engine.Qcow2
{
    /// <summary>
    /// One persistent dirty bitmap: its directory entry and, once loaded, its bits (QEMU:
    /// Qcow2Bitmap + BdrvDirtyBitmap). The bits are held per bitmap-data cluster, as the bitmap table
    /// maps them, so a chunk nothing ever dirtied costs no memory and is stored as an unallocated
    /// table entry. Bit n covers guest bytes [n * granularity, (n + 1) * granularity); within a byte
    /// the least significant bit comes first, as QEMU serializes it.
    /// </summary>
    public sealed class Qcow2Bitmap
    {
        // Directory entry flags (spec: Bitmap directory, bytes 12-15).
        internal const uint InUseFlag = 1;
        internal const uint AutoFlag = 2;
        internal const uint ExtraDataCompatibleFlag = 4;
        internal const uint KnownFlags = InUseFlag | AutoFlag | ExtraDataCompatibleFlag;
        internal const byte DirtyTrackingType = 1;

        // QEMU's limits (block/qcow2-bitmap.c).
        public const int MinGranularityBits = 9;
        public const int MaxGranularityBits = 31;
        public const int MaxNameBytes = 1023;
        public const int MaxBitmaps = 65535;
        public const long MaxDirectoryBytes = 1024L * MaxBitmaps;
        public const long MaxDataBytes = 0x2000_0000;   // BME_MAX_PHYS_SIZE: the bits held in memory
        public const long MaxTableEntries = 0x800_0000; // BME_MAX_TABLE_SIZE

        public string Name { get; internal set; }
        public int GranularityBits { get; internal set; }
        public long Granularity => 1L << GranularityBits;
        /// <summary>QEMU's "auto" flag: the bitmap records every write.</summary>
        public bool Enabled => (Flags & AutoFlag) != 0;
        /// <summary>The in_use flag as found when the image was opened: the bitmap may be stale and is not used.</summary>
        public bool InUse { get; internal set; }
        public long TableOffset { get; internal set; }
        public uint TableSize { get; internal set; }
        public byte Type { get; internal set; } = DirtyTrackingType;
        internal uint Flags { get; set; }
        internal byte[] ExtraData { get; set; } = Array.Empty<byte>();

        /// <summary>Why the bitmap cannot be read or changed (unknown type, extra data, flags), or null.</summary>
        public string Unusable { get; internal set; }

        /// <summary>The bits per bitmap-data cluster (null: all clear); null until loaded.</summary>
        internal byte[][] Chunks;
        /// <summary>The bits differ from the stored table (new, dirtied, cleared, merged, resized).</summary>
        internal bool Modified;
        /// <summary>This session records writes in it (enabled, usable, not stale); on disk it is marked in use meanwhile.</summary>
        internal bool Tracking;

        internal int ChunkBytes;
        internal long DiskSize;

        internal bool IsLoaded => Chunks != null;

        /// <summary>Bytes of bitmap data for a disk of this size at this granularity.</summary>
        public static long DataBytesFor(long diskSize, int granularityBits)
        {
            long bits = (diskSize + (1L << granularityBits) - 1) >> granularityBits;
            return (bits + 7) / 8;
        }

        /// <summary>An empty (all clean) bitmap over a disk of this size.</summary>
        internal void InitializeEmpty(long diskSize, int clusterSize)
        {
            DiskSize = diskSize;
            ChunkBytes = clusterSize;
            long bytes = DataBytesFor(diskSize, GranularityBits);
            Chunks = new byte[(bytes + clusterSize - 1) / clusterSize][];
        }

        private long BitCount => (DiskSize + Granularity - 1) >> GranularityBits;

        /// <summary>Sets the bits covering guest bytes [offset, offset + length).</summary>
        internal void SetRange(long offset, long length)
        {
            if (length <= 0 || offset >= DiskSize) return;
            long end = Math.Min(DiskSize, offset + length);
            long first = offset >> GranularityBits;
            long last = (end - 1) >> GranularityBits;
            SetBits(first, last - first + 1);
            Modified = true;
        }

        private void SetBits(long first, long count)
        {
            long bitsPerChunk = (long)ChunkBytes * 8;
            while (count > 0)
            {
                long chunkIndex = first / bitsPerChunk;
                int bitInChunk = (int)(first % bitsPerChunk);
                int n = (int)Math.Min(count, bitsPerChunk - bitInChunk);
                var chunk = Chunks[chunkIndex] ?? (Chunks[chunkIndex] = new byte[ChunkBytes]);
                int b = bitInChunk;
                int end = bitInChunk + n;
                for (; b < end && (b & 7) != 0; b++) chunk[b >> 3] |= (byte)(1 << (b & 7));
                for (; b + 8 <= end; b += 8) chunk[b >> 3] = 0xFF;
                for (; b < end; b++) chunk[b >> 3] |= (byte)(1 << (b & 7));
                first += n;
                count -= n;
            }
        }

        private bool GetBit(long bit)
        {
            long bitsPerChunk = (long)ChunkBytes * 8;
            var chunk = Chunks[bit / bitsPerChunk];
            if (chunk == null) return false;
            int i = (int)(bit % bitsPerChunk);
            return (chunk[i >> 3] & (1 << (i & 7))) != 0;
        }

        /// <summary>All bits clear.</summary>
        internal void Clear()
        {
            for (int i = 0; i < Chunks.Length; i++) Chunks[i] = null;
            Modified = true;
        }

        /// <summary>
        /// Follows the disk to a new size as QEMU does (hbitmap_truncate): bits past the new end go, a
        /// grown disk's new area starts clean.
        /// </summary>
        internal void Resize(long newSize)
        {
            long oldBits = BitCount;
            DiskSize = newSize;
            long newBits = BitCount;
            long bytes = DataBytesFor(newSize, GranularityBits);
            var chunks = new byte[(bytes + ChunkBytes - 1) / ChunkBytes][];
            Array.Copy(Chunks, chunks, Math.Min(chunks.Length, Chunks.Length));
            Chunks = chunks;
            if (newBits < oldBits)
            {
                // Unused tail bits of the last chunk must be zero (spec: Bitmap data).
                long bitsPerChunk = (long)ChunkBytes * 8;
                long firstGone = newBits;
                if (firstGone % bitsPerChunk != 0)
                {
                    var last = Chunks[firstGone / bitsPerChunk];
                    if (last != null)
                        for (int i = (int)(firstGone % bitsPerChunk); i < bitsPerChunk; i++) last[i >> 3] &= (byte)~(1 << (i & 7));
                }
            }
            Modified = true;
        }

        /// <summary>Dirty and clean runs over the whole disk, merged, the last one ending at the disk's end.</summary>
        internal IEnumerable<(long Offset, long Length, bool Dirty)> Runs()
        {
            long bits = BitCount;
            long bitsPerChunk = (long)ChunkBytes * 8;
            long runStart = 0;
            bool runDirty = false;
            for (long bit = 0; bit < bits;)
            {
                long chunkIndex = bit / bitsPerChunk;
                var chunk = Chunks[chunkIndex];
                long chunkEnd = Math.Min(bits, (chunkIndex + 1) * bitsPerChunk);
                bool allSet = false;
                if (chunk == null || IsUniform(chunk, bit % bitsPerChunk, chunkEnd - bit, out allSet))
                {
                    bool dirty = allSet;
                    if (dirty != runDirty)
                    {
                        if (bit > runStart) yield return Run(runStart, bit, runDirty);
                        runStart = bit;
                        runDirty = dirty;
                    }
                    bit = chunkEnd;
                    continue;
                }
                for (; bit < chunkEnd; bit++)
                {
                    bool dirty = GetBit(bit);
                    if (dirty == runDirty) continue;
                    if (bit > runStart) yield return Run(runStart, bit, runDirty);
                    runStart = bit;
                    runDirty = dirty;
                }
            }
            if (bits > runStart) yield return Run(runStart, bits, runDirty);
        }

        private (long, long, bool) Run(long firstBit, long endBit, bool dirty)
        {
            long start = firstBit << GranularityBits;
            long end = Math.Min(DiskSize, endBit << GranularityBits);
            return (start, end - start, dirty);
        }

        /// <summary>Whether bits [first, first + count) of a chunk are all clear or all set (byte-wise where aligned).</summary>
        private static bool IsUniform(byte[] chunk, long first, long count, out bool allSet)
        {
            allSet = false;
            if ((first & 7) != 0 || (count & 7) != 0) return false;
            int from = (int)(first >> 3), to = (int)((first + count) >> 3);
            byte b0 = chunk[from];
            if (b0 != 0 && b0 != 0xFF) return false;
            for (int i = from + 1; i < to; i++) if (chunk[i] != b0) return false;
            allSet = b0 == 0xFF;
            return true;
        }

        /// <summary>Bytes of the disk the set bits cover.</summary>
        internal long DirtyBytes()
        {
            long total = 0;
            foreach (var r in Runs()) if (r.Dirty) total += r.Length;
            return total;
        }

        public override string ToString() => $"{Name} (granularity {Granularity}{(Enabled ? ", auto" : "")}{(InUse ? ", in-use" : "")})";
    }
}
