using System.Collections.Generic;
using System.Management.Automation;
using System.Threading;
using QcowPS.Engine;
using QcowPS.Engine.Operations;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>Compares the guest data of two images, like qemu-img compare.</summary>
    [Cmdlet(VerbsData.Compare, "QcowImage", DefaultParameterSetName = PathSet)]
    [OutputType(typeof(QcowDifference), typeof(bool))]
    public sealed class CompareQcowImageCommand : ReadImageCmdlet
    {
        /// <summary>The image to compare with.</summary>
        [Parameter(Mandatory = true, Position = 1)]
        [ValidateNotNullOrEmpty]
        public string DifferencePath { get; set; }

        /// <summary>Every differing range, not only the first difference.</summary>
        [Parameter]
        public SwitchParameter All { get; set; }

        /// <summary>Images of different sizes differ, even when the extra part reads as zeros.</summary>
        [Parameter]
        public SwitchParameter Strict { get; set; }

        /// <summary>Return $true when identical, $false otherwise, instead of the differences.</summary>
        [Parameter]
        public SwitchParameter Quiet { get; set; }

        [Parameter]
        public ImageFormat Format { get; set; } = ImageFormat.Auto;

        [Parameter]
        public ImageFormat DifferenceFormat { get; set; } = ImageFormat.Auto;

        private readonly CancellationTokenSource _stop = new CancellationTokenSource();

        protected override void StopProcessing() => _stop.Cancel();

        protected override void ProcessImage(string path)
        {
            var others = ResolveExistingPaths(new[] { DifferencePath }, false);
            if (others.Count != 1)
            {
                if (others.Count > 1)
                    ThrowTerminatingError(ErrorRecords.Argument("OneDifferenceImage", DifferencePath, $"'{DifferencePath}' matches {others.Count} images; give one."));
                return;
            }
            using (var a = OpenImage(path, ReadOptions(Format)))
            using (var b = OpenImage(others[0], ReadOptions(DifferenceFormat)))
            {
                if (a.Length != b.Length && !Strict)
                    WriteWarning($"Image size mismatch: '{path}' has {a.Length} bytes, '{others[0]}' has {b.Length}; the extra part must read as zeros.");
                var progress = new ProgressReporter(this, 4, $"Comparing {System.IO.Path.GetFileName(path)}", $"With {others[0]}");
                bool identical = true;
                foreach (var difference in ImageComparer.Compare(a, b, All, Strict, _stop.Token, progress.Report))
                {
                    identical = false;
                    if (Quiet) break;
                    WriteObject(difference);
                }
                progress.Complete();
                if (Quiet) WriteObject(identical);
            }
        }
    }
}
