using System;
using System.IO;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    /// <summary>Creates qcow2 images laid out as QEMU lays them out (header, refcount table, refcount blocks, L1).</summary>
    public static class Qcow2Creator
    {
        public const long MaxL1Entries = Qcow2Header.MaxL1Bytes / 8;

        /// <summary>Checks the options; returns the resolved virtual size (rounded up to 512).</summary>
        public static long Validate(string path, Qcow2CreateOptions options, out string backingFormat)
        {
            backingFormat = options.BackingFormat;
            int cs = options.ClusterSize;
            if (cs < 512 || cs > (2 << 20) || (cs & (cs - 1)) != 0)
                throw new QcowException(QcowErrorKind.InvalidArgument, path, $"Cluster size {cs} is not a power of two from 512 bytes to 2 MiB");
            if (options.Version != 2 && options.Version != 3)
                throw new QcowException(QcowErrorKind.InvalidArgument, path, $"Version {options.Version} is not 2 or 3");
            int rb = options.RefcountBits;
            if (rb < 1 || rb > 64 || (rb & (rb - 1)) != 0)
                throw new QcowException(QcowErrorKind.InvalidArgument, path, $"Refcount width {rb} is not a power of two from 1 to 64 bits");
            if (options.Version == 2)
            {
                if (rb != 16) throw new QcowException(QcowErrorKind.InvalidArgument, path, "Version 2 images only have 16-bit refcounts");
                if (options.LazyRefcounts) throw new QcowException(QcowErrorKind.InvalidArgument, path, "Lazy refcounts need a version 3 image");
                if (options.ExtendedL2) throw new QcowException(QcowErrorKind.InvalidArgument, path, "Extended L2 entries need a version 3 image");
                if (options.CompressionType != Qcow2CompressionType.Zlib) throw new QcowException(QcowErrorKind.InvalidArgument, path, "zstd compression needs a version 3 image");
            }
            if (options.ExtendedL2 && cs < 16384)
                throw new QcowException(QcowErrorKind.InvalidArgument, path, $"Extended L2 entries need clusters of at least 16 KiB (32 subclusters of 512 bytes); {cs} is too small");
            if (options.BackingFile != null && options.Preallocation != Preallocation.Off && !options.ExtendedL2)
                throw new QcowException(QcowErrorKind.InvalidArgument, path, "A backing file and preallocation can only be used together with extended L2 entries");

            long? size = options.Size;
            if (options.BackingFile != null)
            {
                if (System.Text.Encoding.UTF8.GetByteCount(options.BackingFile) > Qcow2Header.MaxBackingFileNameLength)
                    throw new QcowException(QcowErrorKind.InvalidArgument, path, $"The backing file name is longer than {Qcow2Header.MaxBackingFileNameLength} bytes");
                string resolved = BackingResolver.ResolveRelative(path, options.BackingFile, "backing file");
                if (!File.Exists(resolved))
                {
                    if (size == null)
                        throw new QcowException(QcowErrorKind.NotFound, path, $"Backing file '{options.BackingFile}' does not exist (resolved to '{resolved}'), so the size cannot be taken from it");
                    if (backingFormat == null)
                        throw new QcowException(QcowErrorKind.NotFound, path, $"Backing file '{options.BackingFile}' does not exist and no backing format was given");
                }
                else
                {
                    var format = BackingResolver.ParseFormatName(path, backingFormat);
                    if (format == ImageFormat.Auto && DiskImage.Probe(resolved) == ImageFormat.Auto)
                        throw new QcowException(QcowErrorKind.InvalidArgument, path,
                            $"Backing file '{options.BackingFile}' is not a qcow2 or QED image; if it is a raw image, say so with -BackingFormat raw");
                    using (var backing = DiskImage.Open(resolved, new OpenOptions { Format = format, OpenBackingChain = false, Lock = LockMode.None }))
                    {
                        if (size == null) size = backing.Length;
                        if (backingFormat == null) backingFormat = backing.Format == ImageFormat.Qed ? "qed" : "qcow2";
                    }
                }
            }
            if (size == null)
                throw new QcowException(QcowErrorKind.InvalidArgument, path, "A size is needed (or a backing file to take it from)");
            if (size < 0)
                throw new QcowException(QcowErrorKind.InvalidArgument, path, $"Size {size} is negative");
            if (size > Qcow2Header.MaxVirtualSize)
                throw new QcowException(QcowErrorKind.InvalidArgument, path, $"Size {size} exceeds the maximum of {Qcow2Header.MaxVirtualSize} bytes");
            long rounded = (size.Value + 511) & ~511L;

            int clusterBits = Log2(cs);
            ulong l1 = Qcow2Header.L1EntriesFor((ulong)rounded, clusterBits, options.ExtendedL2);
            if (l1 > MaxL1Entries)
            {
                int smallest = -1;
                for (int bits = clusterBits + 1; bits <= 21; bits++)
                    if (Qcow2Header.L1EntriesFor((ulong)rounded, bits, options.ExtendedL2) <= MaxL1Entries) { smallest = 1 << bits; break; }
                string hint = smallest > 0 ? $"; the smallest cluster size that holds it is {FormatSize(smallest)}" : "; no cluster size up to 2 MiB holds it";
                throw new QcowException(QcowErrorKind.InvalidArgument, path,
                    $"The image size is too large for {FormatSize(cs)} clusters: its L1 table would need {l1} entries, above QEMU's limit of {MaxL1Entries} (32 MiB){hint}");
            }
            return rounded;
        }

        private static string FormatSize(long bytes) =>
            bytes >= (1 << 20) ? $"{bytes >> 20} MiB" : bytes >= 1024 ? $"{bytes >> 10} KiB" : $"{bytes} bytes";

        internal static int Log2(long v)
        {
            int n = 0;
            while ((1L << n) < v) n++;
            return n;
        }

        /// <summary>Creates the image; on any failure nothing is left under the requested name.</summary>
        public static void Create(string path, Qcow2CreateOptions options, Func<IHostFile, IHostFile> wrap = null)
        {
            path = Path.GetFullPath(path);
            long size = Validate(path, options, out string backingFormat);
            NewFile.CheckCanCreate(path, options.Overwrite);
            string temp = NewFile.TemporaryPathFor(path);
            // Replacing a file: hold its write lock until the new image takes its place, so an image a VM
            // (or anyone) has open is never replaced under it (qemu-img create refuses the same way).
            IHostFile replaced = options.Overwrite && File.Exists(path) ? FileHostFile.Open(path, true) : null;
            try
            {
                IHostFile file = FileHostFile.Create(temp, overwrite: false);
                if (wrap != null) file = wrap(file);
                using (file) WriteEmptyImage(file, options, size, backingFormat);
                if (options.Preallocation != Preallocation.Off)
                {
                    using (var image = (Qcow2Image)DiskImage.Open(temp, new OpenOptions { Format = ImageFormat.Qcow2, Writable = true, OpenBackingChain = false, WrapHostFile = wrap }))
                        image.Preallocate(options.Preallocation == Preallocation.Full);
                }
                replaced?.Dispose();
                replaced = null;
                NewFile.MoveIntoPlace(temp, path, options.Overwrite);
            }
            catch
            {
                NewFile.Discard(temp);
                throw;
            }
            finally
            {
                replaced?.Dispose();
            }
        }

        /// <summary>Header, refcount table, refcount blocks and a zeroed L1 table, all counted.</summary>
        internal static void WriteEmptyImage(IHostFile file, Qcow2CreateOptions options, long size, string backingFormat)
        {
            int cs = options.ClusterSize;
            int clusterBits = Log2(cs);
            int refcountOrder = Log2(options.RefcountBits);
            long perBlock = ((long)cs * 8) >> refcountOrder;
            long l1Entries = (long)Qcow2Header.L1EntriesFor((ulong)size, clusterBits, options.ExtendedL2);
            long l1Clusters = (l1Entries * 8 + cs - 1) / cs;

            // Sizes that cover themselves: header + refcount table + refcount blocks + L1.
            long tableClusters = 1, blocks = 1;
            while (true)
            {
                long total = 1 + tableClusters + blocks + l1Clusters;
                long neededBlocks = (total + perBlock - 1) / perBlock;
                long neededTable = Math.Max(1, (neededBlocks * 8 + cs - 1) / cs);
                if (neededBlocks <= blocks && neededTable <= tableClusters) break;
                blocks = Math.Max(blocks, neededBlocks);
                tableClusters = Math.Max(tableClusters, neededTable);
            }
            long tableOffset = (long)cs;
            long blocksOffset = tableOffset + tableClusters * cs;
            long l1Offset = blocksOffset + blocks * cs;
            long used = 1 + tableClusters + blocks + l1Clusters;

            var header = new Qcow2Header
            {
                Version = options.Version,
                ClusterBits = clusterBits,
                Size = (ulong)size,
                L1Size = (uint)l1Entries,
                L1TableOffset = l1Entries > 0 ? (ulong)l1Offset : 0,
                RefcountTableOffset = (ulong)tableOffset,
                RefcountTableClusters = (uint)tableClusters,
                RefcountOrder = refcountOrder,
                HeaderLength = options.Version == 2 ? (uint)Qcow2Header.V2HeaderLength : (uint)Qcow2HeaderLayout.KnownFieldsEnd,
                CompressionType = options.CompressionType,
                BackingFile = options.BackingFile,
                BackingFormat = options.BackingFile != null ? backingFormat : null,
            };
            if (options.CompressionType != Qcow2CompressionType.Zlib) header.IncompatibleFeatures |= (ulong)Qcow2IncompatibleFeatures.CompressionType;
            if (options.ExtendedL2) header.IncompatibleFeatures |= (ulong)Qcow2IncompatibleFeatures.ExtendedL2;
            if (options.LazyRefcounts) header.CompatibleFeatures |= (ulong)Qcow2CompatibleFeatures.LazyRefcounts;
            if (l1Entries == 0) header.L1TableOffset = (ulong)l1Offset;

            // The L1 table's zeros come from extending the file (sparse), like an exabyte image needs.
            file.SetLength(used * cs);
            var block = new byte[cs];
            for (long b = 0; b < blocks; b++)
            {
                Array.Clear(block, 0, cs);
                for (long j = 0; j < perBlock; j++)
                {
                    long k = b * perBlock + j;
                    if (k >= used) break;
                    Qcow2Image.WriteRefcountEntry(block, (int)j, refcountOrder, 1);
                }
                file.WriteAt(blocksOffset + b * cs, block, 0, cs);
            }
            var table = new byte[tableClusters * cs];
            for (long b = 0; b < blocks; b++) BigEndian.Put64(table, (int)(b * 8), (ulong)(blocksOffset + b * cs));
            file.WriteAt(tableOffset, table, 0, table.Length);
            var headerBytes = header.Serialize();
            file.WriteAt(0, headerBytes, 0, headerBytes.Length);
            file.Flush();
        }
    }
}
