using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using QcowPS.Engine.IO;
using QcowPS.Engine.Operations.Conversion;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine.Operations
{
    /// <summary>
    /// Converts any virtual disk to qcow2 or raw: checks the request, creates the destination under a
    /// temporary name, runs a <see cref="ConversionPipeline"/> over it (readers, compressing workers, an
    /// in-order writer; at most a few dozen clusters in flight) and renames it into place, so a failed
    /// or cancelled conversion leaves nothing under the requested name. All-zero ranges are not
    /// written (qemu-img convert's -S 4k), and compressed source clusters are copied without
    /// recompressing when the settings match.
    /// </summary>
    public static class ImageConverter
    {
        /// <summary>Size of a raw destination's clusters as the pipeline counts them (and of its chunks' unit).</summary>
        private const int RawClusterSize = 65536;
        /// <summary>The pipeline moves the source in chunks of about this many bytes (whole clusters, at least one).</summary>
        private const int ChunkTargetBytes = 1 << 20;

        public static QcowConversionResult Convert(VirtualDisk source, string destination, ConvertOptions options) =>
            Convert(source, destination, options, null);

        /// <summary>As Convert, and where this run's time went into 'timing' (bench/EngineTiming).</summary>
        internal static QcowConversionResult Convert(VirtualDisk source, string destination, ConvertOptions options, ConversionTiming timing)
        {
            var watch = Stopwatch.StartNew();
            destination = Path.GetFullPath(destination);
            CheckRequest(source, destination, options);

            long size = source.Length;
            var bitmapSource = BitmapSource(source, destination, options);
            var dirtyExtents = DirtyExtents(source, destination, options);
            var createOptions = new Qcow2CreateOptions
            {
                Size = size, ClusterSize = options.ClusterSize, Version = options.Version, RefcountBits = options.RefcountBits,
                CompressionType = options.CompressionType, BackingFile = options.BackingFile, BackingFormat = options.BackingFormat,
            };
            string backingFormat = null;
            if (options.DestinationFormat == ImageFormat.Qcow2)
            {
                // qcow2 sizes are whole sectors (as qemu-img rounds them); the tail past the source reads as zeros.
                createOptions.Size = (size + 511) & ~511L;
                Qcow2Creator.Validate(destination, createOptions, out backingFormat);
            }
            int clusterSize = options.DestinationFormat == ImageFormat.Qcow2 ? options.ClusterSize : RawClusterSize;
            int chunkBytes = Math.Max(1, ChunkTargetBytes / clusterSize) * clusterSize;
            bool kernelCopy = KernelCopy.UseFor(options.KernelCopyMode, destination);
            // Dirty ranges widened to whole chunks: within them, clusters equal to the backing file are still skipped.
            var copyRanges = options.Bitmap != null ? ChunkRanges(dirtyExtents, chunkBytes) : null;

            string temp = NewFile.TemporaryPathFor(destination);
            var result = new QcowConversionResult
            {
                Source = source.Path, Destination = destination, DestinationFormat = options.DestinationFormat, VirtualSize = size,
            };
            VirtualDisk backing = null;
            IHostFile rawFile = null;
            Qcow2Image qcow = null;
            try
            {
                if (options.DestinationFormat == ImageFormat.Qcow2)
                {
                    if (options.BackingFile != null)
                    {
                        string resolved = BackingResolver.ResolveRelative(destination, options.BackingFile, "backing file");
                        backing = DiskImage.Open(resolved, new OpenOptions { Format = BackingResolver.ParseFormatName(destination, backingFormat) });
                    }
                    qcow = CreateQcow2Destination(temp, options, createOptions, backingFormat);
                }
                else rawFile = CreateRawDestination(temp, options);

                ConversionCounters counters;
                using (var pipeline = new ConversionPipeline(source, options, backing, qcow, rawFile, clusterSize, chunkBytes, copyRanges, kernelCopy, timing))
                {
                    pipeline.Run();
                    counters = pipeline.Counters;
                }

                if (qcow != null)
                {
                    if (options.CopyBitmaps) CopyBitmaps(bitmapSource, qcow);
                    qcow.FlushForConversion(options.Sync);
                    qcow.Dispose();
                    qcow = null;
                }
                else
                {
                    rawFile.SetLength(size);
                    if (options.Sync) rawFile.Flush();
                    rawFile.Dispose();
                    rawFile = null;
                }
                NewFile.MoveIntoPlace(temp, destination, options.Overwrite);
                if (options.DestinationFormat == ImageFormat.Qcow2) result.VirtualSize = createOptions.Size.Value;
                result.DataClusters = counters.Data;
                result.ZeroClusters = counters.Zero;
                result.CompressedClusters = counters.Compressed;
                result.CompressionRatio = counters.BytesOut == 0 ? 1.0 : (double)counters.BytesIn / counters.BytesOut;
                result.FileSize = new FileInfo(destination).Length;
                result.Duration = watch.Elapsed;
                return result;
            }
            catch
            {
                try { qcow?.Dispose(); } catch (Exception) { }
                try { rawFile?.Dispose(); } catch (Exception) { }
                NewFile.Discard(temp);
                throw;
            }
            finally
            {
                backing?.Dispose();
            }
        }

        private static void CheckRequest(VirtualDisk source, string destination, ConvertOptions options)
        {
            if (options.DestinationFormat != ImageFormat.Qcow2 && options.DestinationFormat != ImageFormat.Raw)
                throw new QcowException(QcowErrorKind.InvalidArgument, destination, $"Destination format {options.DestinationFormat} is not supported (qcow2 or raw)");
            if (options.DestinationFormat == ImageFormat.Raw && (options.Compress || options.BackingFile != null))
                throw new QcowException(QcowErrorKind.InvalidArgument, destination, "A raw destination cannot be compressed or have a backing file");
            if (DiskImage.LayerWithFile(source, destination) != null)
                throw new QcowException(QcowErrorKind.InvalidArgument, destination, $"The destination '{destination}' is the source or one of its backing files");
            NewFile.CheckCanCreate(destination, options.Overwrite);
        }

        private static Qcow2Image CreateQcow2Destination(string temp, ConvertOptions options, Qcow2CreateOptions createOptions, string backingFormat)
        {
            IHostFile file = FileHostFile.Create(temp, false);
            if (options.WrapDestination != null) file = options.WrapDestination(file);
            Qcow2Creator.WriteEmptyImage(file, createOptions, createOptions.Size.Value, backingFormat);
            return Qcow2Image.Open(file, new OpenOptions { Writable = true });
        }

        private static IHostFile CreateRawDestination(string temp, ConvertOptions options)
        {
            IHostFile file = FileHostFile.Create(temp, false);
            if (options.WrapDestination != null) file = options.WrapDestination(file);
            return file;
        }

        /// <summary>The qcow2 source whose bitmaps -Bitmaps copies, checked before anything is written; or null.</summary>
        private static Qcow2Image BitmapSource(VirtualDisk source, string destination, ConvertOptions options)
        {
            if (!options.CopyBitmaps) return null;
            var image = source as Qcow2Image ??
                throw new QcowException(QcowErrorKind.InvalidArgument, source.Path, $"'{source.Path}' is a {source.Format} image; copying persistent bitmaps needs a qcow2 source");
            if (options.DestinationFormat != ImageFormat.Qcow2)
                throw new QcowException(QcowErrorKind.InvalidArgument, destination, "Bitmaps can only be used with a qcow2 destination");
            foreach (var b in image.Bitmaps)
                if (b.InUse || b.Unusable != null)
                    throw new QcowException(QcowErrorKind.BitmapInUse, source.Path,
                        $"Bitmap '{b.Name}' of '{source.Path}' is {(b.InUse ? "in use (possibly stale)" : "unusable")} and cannot be copied; remove it first (qemu-img convert --bitmaps refuses it too)");
            return image;
        }

        /// <summary>
        /// -Bitmap: the runs of that bitmap of the source, whatever the source is (a qcow2 image's own
        /// bitmap, an NBD export's qemu:dirty-bitmap context), checked before anything is written; or null.
        /// </summary>
        private static IEnumerable<QcowBitmapExtent> DirtyExtents(VirtualDisk source, string destination, ConvertOptions options)
        {
            if (options.Bitmap == null) return null;
            if (options.DestinationFormat != ImageFormat.Qcow2)
                throw new QcowException(QcowErrorKind.InvalidArgument, destination, "Bitmaps can only be used with a qcow2 destination");
            if (options.BackingFile == null)
                throw new QcowException(QcowErrorKind.InvalidArgument, destination,
                    "An incremental backup (-Bitmap) needs the previous backup as -BackingFile; without it the increment would not be a whole disk");
            return source.GetDirtyExtents(options.Bitmap);  // exists, usable, not in use: else the error now
        }

        /// <summary>The dirty runs, widened to whole chunks and merged, in order.</summary>
        private static List<(long Start, long End)> ChunkRanges(IEnumerable<QcowBitmapExtent> extents, int chunkBytes)
        {
            var ranges = new List<(long Start, long End)>();
            foreach (var e in extents)
            {
                if (!e.Dirty) continue;
                long start = e.Offset / chunkBytes * chunkBytes;
                long end = (e.Offset + e.Length + chunkBytes - 1) / chunkBytes * chunkBytes;
                if (ranges.Count > 0 && ranges[ranges.Count - 1].End >= start)
                    ranges[ranges.Count - 1] = (ranges[ranges.Count - 1].Start, Math.Max(end, ranges[ranges.Count - 1].End));
                else ranges.Add((start, end));
            }
            return ranges;
        }

        /// <summary>qemu-img convert --bitmaps: each bitmap again in the destination, same name, granularity, state and bits.</summary>
        private static void CopyBitmaps(Qcow2Image source, Qcow2Image destination)
        {
            foreach (var b in source.Bitmaps)
            {
                destination.AddBitmap(b.Name, b.GranularityBits, b.Enabled);
                destination.MergeBitmap(b.Name, source.GetBitmapExtents(b.Name));
            }
        }
    }
}
