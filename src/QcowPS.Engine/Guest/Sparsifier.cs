using System;
using System.Collections.Generic;
using QcowPS.Engine.Guest.FileSystems;
using QcowPS.Engine.Guest.Partitions;
using QcowPS.Engine.Operations;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine.Guest
{
    /// <summary>
    /// Gives free file-system space back (zerofree, virt-sparsify --in-place): every allocation unit of
    /// the image that lies wholly inside blocks a file system marks free, and that some layer stores,
    /// is made to read as zeros through the ordinary write path (a zero cluster in qcow2, a hole in raw).
    /// Nothing is written for a file system that is not fully understood, dirty, inconsistent, or
    /// inside a table that could not be verified: those are reported as skipped.
    /// </summary>
    public static class Sparsifier
    {
        public const string Optimized = "Optimized";
        public const string WouldOptimize = "WouldOptimize";
        public const string Skipped = "Skipped";

        /// <summary>
        /// Finds (and, unless dryRun, zeroes) the free units of every file system on the disk. Every
        /// free map is read and checked before the first write to its file system.
        /// progress(done, total) counts bytes of free runs handled.
        /// </summary>
        public static List<QcowOptimizeResult> Optimize(VirtualDisk disk, bool dryRun, Action<long, long> progress = null)
        {
            var table = PartitionTableReader.Read(disk);
            var results = new List<QcowOptimizeResult>();
            long unit = ImageInspector.PieceSize(disk);
            foreach (var volume in GuestInspector.Volumes(disk, table))
            {
                var result = new QcowOptimizeResult { Path = disk.Path, Partition = volume.Number, Type = volume.FileSystem?.Type, Action = Skipped };
                results.Add(result);
                if (!table.Verified) { result.Reason = "the partition table could not be verified: " + string.Join("; ", table.Warnings); continue; }
                if (volume.FileSystem == null) { result.Reason = "no known file system was found in it"; continue; }
                result.Reason = volume.FileSystem.RefusalReason;
                if (result.Reason != null) continue;
                List<FreeRun> runs;
                try
                {
                    runs = Merge(volume.FileSystem.FreeRuns());
                }
                catch (QcowException e) when (e.Kind == QcowErrorKind.Corrupt || e.Kind == QcowErrorKind.Unsupported)
                {
                    result.Reason = e.Message;
                    continue;
                }
                long total = 0;
                foreach (var r in runs) total += r.Length;
                result.FreeBytes = total;
                long done = 0;
                foreach (var run in runs)
                {
                    long start = AlignUp(volume.Offset + run.Offset, unit);
                    long end = Math.Min(AlignDown(volume.Offset + run.Offset + run.Length, unit), volume.Offset + volume.Length);
                    if (end > start) ZeroStored(disk, start, end, dryRun, result);
                    done += run.Length;
                    progress?.Invoke(done, total);
                }
                if (!dryRun) disk.Flush();
                result.Action = dryRun ? WouldOptimize : Optimized;
                result.Reason = null;
            }
            return results;
        }

        /// <summary>Zeroes the runs between start and end that some layer stores (runs that already read as zeros are left alone).</summary>
        private static void ZeroStored(VirtualDisk disk, long start, long end, bool dryRun, QcowOptimizeResult result)
        {
            long unit = ImageInspector.PieceSize(disk);
            long pos = start;
            while (pos < end)
            {
                var e = disk.GetChainExtent(pos, end - pos);
                long n = Math.Max(1, Math.Min(e.Length, end - pos));
                if (e.Type == ClusterType.Normal || e.Type == ClusterType.Compressed)
                {
                    if (!dryRun) disk.WriteZeroes(pos, n);
                    result.ZeroedBytes += n;
                    result.ZeroedClusters += (n + unit - 1) / unit;
                }
                pos += n;
            }
        }

        private static List<FreeRun> Merge(IEnumerable<FreeRun> runs)
        {
            var merged = new List<FreeRun>();
            foreach (var r in runs)
            {
                if (r.Length <= 0) continue;
                int last = merged.Count - 1;
                if (last >= 0 && merged[last].Offset + merged[last].Length == r.Offset)
                    merged[last] = new FreeRun(merged[last].Offset, merged[last].Length + r.Length);
                else merged.Add(r);
            }
            return merged;
        }

        private static long AlignUp(long v, long unit) => (v + unit - 1) / unit * unit;
        private static long AlignDown(long v, long unit) => v / unit * unit;
    }
}
