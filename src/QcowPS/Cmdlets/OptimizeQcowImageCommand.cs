using System.Collections.Generic;
using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.Guest;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>
    /// Gives free file-system space back to the image (zerofree / virt-sparsify --in-place / Optimize-VHD):
    /// clusters holding only free blocks of understood, clean file systems become zero clusters.
    /// </summary>
    [Cmdlet(VerbsCommon.Optimize, "QcowImage", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(QcowOptimizeResult))]
    public sealed class OptimizeQcowImageCommand : ImageCmdlet
    {
        [Parameter]
        public ImageFormat Format { get; set; } = ImageFormat.Auto;

        protected override void ProcessImage(string path)
        {
            List<QcowOptimizeResult> results;
            // Plan on a read-only open first: -WhatIf reports what would be freed and never opens for writing.
            using (var disk = DiskImage.Open(path, new OpenOptions { Format = Format, Writable = false }))
                results = Sparsifier.Optimize(disk, dryRun: true);
            if (results.TrueForAll(r => r.Action == Sparsifier.Skipped) || !ShouldProcess(path, $"Zero the clusters that hold only free file-system blocks ({Describe(results)})"))
            {
                Emit(path, results);
                return;
            }
            var progress = new ProgressReporter(this, 13, $"Optimizing {System.IO.Path.GetFileName(path)}", "Zeroing free clusters");
            using (var disk = DiskImage.Open(path, new OpenOptions { Format = Format, Writable = true }))
                results = Sparsifier.Optimize(disk, dryRun: false, progress.Report);
            progress.Complete();
            Emit(path, results);
        }

        private static string Describe(List<QcowOptimizeResult> plan)
        {
            long bytes = 0;
            foreach (var r in plan) bytes += r.ZeroedBytes;
            return $"{bytes} bytes stored";
        }

        private void Emit(string path, List<QcowOptimizeResult> results)
        {
            foreach (var r in results)
            {
                r.Path = path;
                if (r.Action == Sparsifier.Skipped)
                    WriteWarning($"{path}: partition {r.Partition} ({r.Type ?? "unknown"}) is left untouched: {r.Reason}");
                WriteObject(r);
            }
        }
    }
}
