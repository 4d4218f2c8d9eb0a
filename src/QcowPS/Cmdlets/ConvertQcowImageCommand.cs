using System;
using System.Management.Automation;
using System.Threading;
using QcowPS.Engine;
using QcowPS.Engine.Operations;
using QcowPS.Engine.Qcow2;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>Converts an image to qcow2 or raw, like qemu-img convert, compressing on every core with -Compress.</summary>
    [Cmdlet(VerbsData.Convert, "QcowImage", DefaultParameterSetName = PathSet, SupportsShouldProcess = true)]
    [OutputType(typeof(QcowConversionResult))]
    public sealed class ConvertQcowImageCommand : ReadImageCmdlet
    {
        [Parameter(Mandatory = true, Position = 1)]
        [ValidateNotNullOrEmpty]
        public string Destination { get; set; }

        [Parameter]
        [ValidateSet("Qcow2", "Raw")]
        public string DestinationFormat { get; set; } = "Qcow2";

        [Parameter]
        public SwitchParameter Compress { get; set; }

        [Parameter]
        public Qcow2CompressionType CompressionType { get; set; } = Qcow2CompressionType.Zlib;

        /// <summary>Compression level: zlib 1-9, zstd 1-19 (default: QEMU's, zlib 6 and zstd 3).</summary>
        [Parameter]
        [ValidateRange(1, 19)]
        public int CompressionLevel { get; set; }

        [Parameter]
        [SizeTransformation]
        [ValidateSet("512", "1024", "2048", "4096", "8192", "16384", "32768", "65536", "131072", "262144", "524288", "1048576", "2097152")]
        public long ClusterSize { get; set; } = 65536;

        [Parameter]
        [ValidateSet("2", "3")]
        public int Version { get; set; } = 3;

        [Parameter]
        [ValidateSet("1", "2", "4", "8", "16", "32", "64")]
        public int RefcountBits { get; set; } = 16;

        /// <summary>Convert this internal snapshot's data instead of the current disk.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string Snapshot { get; set; }

        /// <summary>Backing file of the new image; only data that differs from it is written.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string BackingFile { get; set; }

        [Parameter]
        [ValidateSet("qcow2", "qed", "raw")]
        public string BackingFormat { get; set; }

        /// <summary>Threads compressing or decompressing (default: the number of processors).</summary>
        [Parameter]
        [ValidateRange(1, 64)]
        public int ThrottleLimit { get; set; } = Environment.ProcessorCount;

        [Parameter]
        public ImageFormat Format { get; set; } = ImageFormat.Auto;

        [Parameter]
        public SwitchParameter Force { get; set; }

        /// <summary>fsync the new image before it takes its name (qemu-img convert does not flush by default).</summary>
        [Parameter]
        public SwitchParameter Sync { get; set; }

        /// <summary>Incremental backup: copy only what this persistent bitmap of the source marks dirty, over -BackingFile.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string Bitmap { get; set; }

        /// <summary>Copy the source's persistent bitmaps to the destination (qemu-img convert --bitmaps).</summary>
        [Parameter]
        public SwitchParameter Bitmaps { get; set; }

        private readonly CancellationTokenSource _stop = new CancellationTokenSource();
        private bool _converted;

        protected override void BeginProcessing()
        {
            if (CompressionLevel > 9 && CompressionType == Qcow2CompressionType.Zlib)
                ThrowTerminatingError(ErrorRecords.Argument("InvalidCompressionLevel", CompressionLevel, "zlib levels are 1 to 9 (zstd: 1 to 19)."));
            if (CompressionLevel > 0 && !Compress)
                ThrowTerminatingError(ErrorRecords.Argument("ConflictingParameters", CompressionLevel, "-CompressionLevel needs -Compress."));
            if (DestinationFormat == "Raw" && (Compress || BackingFile != null))
                ThrowTerminatingError(ErrorRecords.Argument("ConflictingParameters", Destination, "A raw destination cannot be compressed or have a backing file."));
            if (Bitmap != null && BackingFile == null)
                ThrowTerminatingError(ErrorRecords.Argument("ConflictingParameters", Bitmap, "-Bitmap (an incremental backup) needs the previous backup as -BackingFile."));
            if ((Bitmap != null || Bitmaps) && DestinationFormat == "Raw")
                ThrowTerminatingError(ErrorRecords.Argument("ConflictingParameters", Destination, "Bitmaps need a qcow2 destination."));
        }

        protected override void StopProcessing() => _stop.Cancel();

        protected override void ProcessImage(string path)
        {
            if (_converted)
                ThrowTerminatingError(ErrorRecords.Argument("OneSourcePerDestination", Destination, $"'{Destination}' takes one converted image; several sources were given."));
            _converted = true;
            string destination = ResolveNewPath(Destination);
            using (var source = DiskImage.Open(path, ReadOptions(Format)))
            {
                VirtualDisk input = source;
                VirtualDisk view = null;
                try
                {
                    if (Snapshot != null)
                    {
                        if (!(source is Qcow2Image q))
                            throw new QcowException(QcowErrorKind.InvalidArgument, path, $"'{path}' is a {source.Format} image, which has no internal snapshots");
                        input = view = q.OpenSnapshot(Snapshot);
                    }
                    if (System.IO.File.Exists(destination) && !Force)
                        throw new QcowException(QcowErrorKind.AlreadyExists, destination, $"'{destination}' already exists; use -Force to replace it");
                    string what = $"Convert '{path}'{(Snapshot != null ? $" (snapshot '{Snapshot}')" : "")} to {DestinationFormat}{(Compress ? $" compressed with {CompressionType}" : "")}{(Bitmap != null ? $", only what bitmap '{Bitmap}' marks dirty" : "")}";
                    if (!ShouldProcess(destination, what)) return;

                    var progress = new ProgressReporter(this, 3, $"Converting {System.IO.Path.GetFileName(path)}", $"To {destination}");
                    var options = new ConvertOptions
                    {
                        DestinationFormat = DestinationFormat == "Raw" ? ImageFormat.Raw : ImageFormat.Qcow2,
                        Compress = Compress,
                        CompressionType = CompressionType,
                        CompressionLevel = CompressionLevel,
                        ClusterSize = (int)ClusterSize,
                        Version = Version,
                        RefcountBits = RefcountBits,
                        BackingFile = BackingFile,
                        BackingFormat = BackingFormat,
                        Threads = ThrottleLimit,
                        Overwrite = Force,
                        Sync = Sync,
                        Cancellation = _stop.Token,
                        Progress = progress.Report,
                        Bitmap = Bitmap,
                        CopyBitmaps = Bitmaps,
                    };
                    QcowConversionResult result;
                    try
                    {
                        result = ImageConverter.Convert(input, destination, options);
                    }
                    catch (OperationCanceledException)
                    {
                        // Ctrl+C: the partial destination is already deleted; the pipeline is stopping.
                        return;
                    }
                    progress.Complete();
                    WriteObject(result);
                }
                finally
                {
                    view?.Dispose();
                }
            }
        }
    }
}
