using System;
using System.Management.Automation;
using System.Threading;
using QcowPS.Engine;
using QcowPS.Engine.Nbd;
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

        /// <summary>Qcow2 or Raw; by default the one the destination's extension names (.qcow2, .raw), else qcow2.</summary>
        [Parameter]
        [ValidateSet("Auto", "Qcow2", "Raw", IgnoreCase = true)]
        public ImageFormat DestinationFormat { get; set; } = ImageFormat.Auto;

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
        [ValidateNumericChoice("ClusterSize")]
        [ArgumentCompleter(typeof(NumericChoiceCompleter))]
        public long ClusterSize { get; set; } = 65536;

        [Parameter]
        [ValidateSet("2", "3")]
        public int Version { get; set; } = 3;

        [Parameter]
        [ValidateNumericChoice("RefcountBits")]
        [ArgumentCompleter(typeof(NumericChoiceCompleter))]
        public int RefcountBits { get; set; } = 16;

        /// <summary>Convert this internal snapshot's data instead of the current disk.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(SnapshotNameCompleter))]
        public string Snapshot { get; set; }

        /// <summary>Backing file of the new image; only data that differs from it is written.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string BackingFile { get; set; }

        /// <summary>The format recorded for -BackingFile (stored as QEMU's name: qcow2, qed, raw); Auto probes it.</summary>
        [Parameter]
        [ValidateSet("Auto", "Qcow2", "Qed", "Raw", IgnoreCase = true)]
        public ImageFormat BackingFormat { get; set; } = ImageFormat.Auto;

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
            base.BeginProcessing();
            if (CompressionLevel > 9 && CompressionType == Qcow2CompressionType.Zlib)
                ThrowTerminatingError(ErrorRecords.Argument("InvalidCompressionLevel", CompressionLevel, "zlib levels are 1 to 9 (zstd: 1 to 19)."));
            if (CompressionLevel > 0 && !Compress)
                ThrowTerminatingError(ErrorRecords.Argument("ConflictingParameters", CompressionLevel, "-CompressionLevel needs -Compress."));
            if (Bitmap != null && BackingFile == null)
                ThrowTerminatingError(ErrorRecords.Argument("ConflictingParameters", Bitmap, "-Bitmap (an incremental backup) needs the previous backup as -BackingFile."));
        }

        /// <summary>
        /// -DestinationFormat, else what the destination's extension names, else qcow2. A name that says a
        /// format we do not write (.qed) is refused rather than filled with something else.
        /// </summary>
        private ImageFormat ChooseDestinationFormat(string destination)
        {
            if (DestinationFormat != ImageFormat.Auto) return DestinationFormat;
            var named = ImageFormats.FromExtension(destination);
            if (named == ImageFormat.Auto) return ImageFormat.Qcow2;
            if (named == ImageFormat.Qcow2 || named == ImageFormat.Raw) return named;
            ThrowTerminatingError(ErrorRecords.Argument("ConflictingParameters", destination,
                $"'{destination}' is named as a {ImageFormats.QemuName(named)} image, which Convert-QcowImage does not write; choose another name or say -DestinationFormat Qcow2 or Raw."));
            return named;
        }

        protected override void StopProcessing() => _stop.Cancel();

        /// <summary>
        /// An NBD destination is an existing export, written in place like qemu-img convert -n: its size
        /// stays, it must hold the source, and the file options (format, compression, backing) do not apply.
        /// </summary>
        private void ConvertIntoExport(string path)
        {
            foreach (var fileOnly in new[] { "DestinationFormat", "Compress", "CompressionType", "CompressionLevel", "ClusterSize", "Version", "RefcountBits", "BackingFile", "BackingFormat", "Bitmap", "Bitmaps", "Force", "Sync" })
                if (MyInvocation.BoundParameters.ContainsKey(fileOnly))
                    ThrowTerminatingError(ErrorRecords.Argument("ConflictingParameters", Destination,
                        $"-{fileOnly} applies to a new image file; '{Destination}' is an existing NBD export, written in place."));
            var sourceOptions = ReadOptions(Format);
            sourceOptions.Nbd = NbdClientOptions.ForCopying();
            using (var source = OpenImage(path, sourceOptions))
            {
                VirtualDisk input = source;
                VirtualDisk view = null;
                try
                {
                    if (Snapshot != null) input = view = OpenSnapshotView(source, Snapshot);
                    using (var destination = OpenImage(Destination, new OpenOptions { Writable = true, Nbd = NbdClientOptions.ForCopying() }))
                    {
                        if (!ShouldProcess(Destination, $"Write the {input.Length} bytes of guest data of '{path}'{(Snapshot != null ? $" (snapshot '{Snapshot}')" : "")} into the NBD export")) return;
                        var progress = new ProgressReporter(this, 3, $"Converting {System.IO.Path.GetFileName(path)}", $"Into {Destination}");
                        QcowConversionResult result;
                        try
                        {
                            result = DiskCopier.CopyInto(input, destination, new ConvertOptions { Cancellation = _stop.Token, Progress = progress.Report });
                        }
                        catch (OperationCanceledException)
                        {
                            return;
                        }
                        progress.Complete();
                        WriteVerbose($"Wrote the guest data of '{path}' into '{Destination}'");
                        WriteObject(result);
                    }
                }
                finally
                {
                    view?.Dispose();
                }
            }
        }

        protected override void ProcessImage(string path)
        {
            if (_converted)
                ThrowTerminatingError(ErrorRecords.Argument("OneSourcePerDestination", Destination, $"'{Destination}' takes one converted image; several sources were given."));
            _converted = true;
            if (IsNbdUri(Destination))
            {
                ConvertIntoExport(path);
                return;
            }
            string destination = ResolveNewPath(Destination);
            var format = ChooseDestinationFormat(destination);
            if (format == ImageFormat.Raw && (Compress || BackingFile != null))
                ThrowTerminatingError(ErrorRecords.Argument("ConflictingParameters", destination, "A raw destination cannot be compressed or have a backing file."));
            if ((Bitmap != null || Bitmaps) && format == ImageFormat.Raw)
                ThrowTerminatingError(ErrorRecords.Argument("ConflictingParameters", destination, "Bitmaps need a qcow2 destination."));
            var sourceOptions = ReadOptions(Format);
            sourceOptions.Nbd = NbdClientOptions.ForCopying();  // an NBD source that allows multi-conn is read over several connections
            if (Bitmap != null) sourceOptions.Bitmaps.Add(Bitmap);  // an NBD source is asked for its qemu:dirty-bitmap context
            using (var source = OpenImage(path, sourceOptions))
            {
                VirtualDisk input = source;
                VirtualDisk view = null;
                try
                {
                    if (Snapshot != null) input = view = OpenSnapshotView(source, Snapshot);
                    // Before ShouldProcess, so that -WhatIf reports what a real run would refuse.
                    Engine.IO.NewFile.CheckCanCreate(destination, Force);
                    string what = $"Convert '{path}'{(Snapshot != null ? $" (snapshot '{Snapshot}')" : "")} to {ImageFormats.QemuName(format)}{(Compress ? $" compressed with {CompressionType}" : "")}{(Bitmap != null ? $", only what bitmap '{Bitmap}' marks dirty" : "")}";
                    if (!ShouldProcess(destination, what)) return;

                    var progress = new ProgressReporter(this, 3, $"Converting {System.IO.Path.GetFileName(path)}", $"To {destination}");
                    var options = new ConvertOptions
                    {
                        DestinationFormat = format,
                        Compress = Compress,
                        CompressionType = CompressionType,
                        CompressionLevel = CompressionLevel,
                        ClusterSize = (int)ClusterSize,
                        Version = Version,
                        RefcountBits = RefcountBits,
                        BackingFile = BackingFile,
                        BackingFormat = ImageFormats.QemuName(BackingFormat),
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
                    WriteVerbose($"Wrote '{result.Destination}' ({ImageFormats.QemuName(result.DestinationFormat)}, {result.FileSize} bytes) from '{path}'");
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
