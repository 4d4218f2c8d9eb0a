using System;
using System.IO;
using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.Operations;
using QcowPS.Engine.Qcow2;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>Reads guest data, like qemu-io -c read / nbd_pread.</summary>
    [Cmdlet(VerbsCommunications.Read, "QcowBlock", DefaultParameterSetName = PathSet, SupportsShouldProcess = true)]
    [OutputType(typeof(QcowBlock), typeof(byte[]))]
    public sealed class ReadQcowBlockCommand : ReadImageCmdlet
    {
        /// <summary>Largest -Raw read: one .NET byte array.</summary>
        private const long MaxRawLength = 0x7FFFFFC7;

        [Parameter(Position = 1)]
        [SizeTransformation]
        [ValidateRange(0, long.MaxValue)]
        public long Offset { get; set; }

        /// <summary>Bytes to read; default: to the end of the disk.</summary>
        [Parameter(Position = 2)]
        [SizeTransformation]
        [ValidateRange(0, long.MaxValue)]
        public long Length { get; set; } = -1;

        [Parameter]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(SnapshotNameCompleter))]
        public string Snapshot { get; set; }

        [Parameter]
        public SwitchParameter Raw { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        public string OutFile { get; set; }

        /// <summary>Replace an existing -OutFile.</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        [Parameter]
        public ImageFormat Format { get; set; } = ImageFormat.Auto;

        private string _outFileWritten;

        protected override void BeginProcessing()
        {
            base.BeginProcessing();
            if (Raw && OutFile != null)
                ThrowTerminatingError(ErrorRecords.Argument("ConflictingParameters", null, "-Raw and -OutFile cannot be used together."));
        }

        protected override void ProcessRecord()
        {
            var files = ResolveInputPaths();
            if (OutFile != null && (files.Count > 1 || (_outFileWritten != null && files.Count > 0)))
                ThrowTerminatingError(ErrorRecords.Argument("OneImagePerOutFile", OutFile,
                    $"-OutFile '{OutFile}' takes the data of one image; several images were given."));
            ForEachFile(files, ProcessImage);
        }

        protected override void ProcessImage(string path)
        {
            var options = ReadOptions(Format);
            if (OutFile != null) options.Nbd = Engine.Nbd.NbdClientOptions.ForCopying();  // a whole export: several connections where the server allows
            using (var image = OpenImage(path, options))
            {
                VirtualDisk disk = image;
                VirtualDisk snapshotView = null;
                try
                {
                    if (Snapshot != null) disk = snapshotView = OpenSnapshotView(image, Snapshot);
                    long length = Length < 0 ? Math.Max(0, disk.Length - Offset) : Length;
                    if (Offset > disk.Length || length > disk.Length - Offset)
                        throw new QcowException(QcowErrorKind.InvalidArgument, path,
                            $"Offset {Offset} and length {length} reach past the end of the disk ({disk.Length} bytes) of '{path}'");
                    if (Raw) WriteRaw(disk, length);
                    else if (OutFile != null) CopyToFile(disk, length);
                    else
                    {
                        // -Verbose: which layer of the chain answered, and for how many bytes.
                        var answered = new System.Collections.Generic.Dictionary<string, long>();
                        foreach (var block in ImageInspector.Blocks(disk, Offset, length, ImageInspector.PieceSize(disk)))
                        {
                            block.Path = path;
                            string layer = block.LayerPath ?? "(no layer: reads as zeros)";
                            answered[layer] = (answered.TryGetValue(layer, out long n) ? n : 0) + block.Length;
                            WriteObject(block);
                        }
                        foreach (var pair in answered) WriteVerbose($"{pair.Value} bytes from '{pair.Key}'");
                    }
                }
                finally
                {
                    snapshotView?.Dispose();
                }
            }
        }

        private void WriteRaw(VirtualDisk disk, long length)
        {
            if (length > MaxRawLength)
                throw new QcowException(QcowErrorKind.InvalidArgument, disk.Path,
                    $"-Raw returns one byte array, which holds at most {MaxRawLength} bytes; use -OutFile for {length} bytes");
            var data = new byte[length];
            disk.Read(Offset, data, 0, (int)length);
            // One byte[] object, not a stream of bytes down the pipeline.
            WriteObject(data, false);
        }

        private void CopyToFile(VirtualDisk disk, long length)
        {
            string target = ResolveNewPath(OutFile);
            var layer = DiskImage.LayerWithFile(disk, target);
            if (layer != null)
                throw new QcowException(QcowErrorKind.InvalidArgument, target,
                    $"-OutFile '{target}' is {(ReferenceEquals(layer, disk) ? "the image being read" : "a backing file of the image being read")}; choose another file");
            Engine.IO.NewFile.CheckCanCreate(target, Force);
            if (!ShouldProcess(target, $"Write {length} bytes of guest data from '{disk.Path}'")) return;
            _outFileWritten = target;
            var progress = new ProgressReporter(this, 1, $"Reading {disk.Path}", $"Writing {target}");
            RawExporter.Export(disk, Offset, length, target, Force, progress.Report);
            WriteVerbose($"Wrote {length} bytes of guest data to '{target}'");
            progress.Complete();
        }
    }
}
