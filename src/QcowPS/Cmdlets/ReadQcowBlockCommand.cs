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
            using (var image = DiskImage.Open(path, ReadOptions(Format)))
            {
                VirtualDisk disk = image;
                VirtualDisk snapshotView = null;
                try
                {
                    if (Snapshot != null)
                    {
                        if (!(image is Qcow2Image q))
                            throw new QcowException(QcowErrorKind.InvalidArgument, path, $"'{path}' is a {image.Format} image, which has no internal snapshots");
                        disk = snapshotView = q.OpenSnapshot(Snapshot);
                    }
                    long length = Length < 0 ? Math.Max(0, disk.Length - Offset) : Length;
                    if (Offset > disk.Length || length > disk.Length - Offset)
                        throw new QcowException(QcowErrorKind.InvalidArgument, path,
                            $"Offset {Offset} and length {length} reach past the end of the disk ({disk.Length} bytes) of '{path}'");
                    if (Raw) WriteRaw(disk, length);
                    else if (OutFile != null) CopyToFile(disk, length);
                    else
                    {
                        foreach (var block in ImageInspector.Blocks(disk, Offset, length, ImageInspector.PieceSize(disk)))
                        {
                            block.Path = path;
                            WriteObject(block);
                        }
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
            if (File.Exists(target) && !Force)
                throw new QcowException(QcowErrorKind.AlreadyExists, target, $"'{target}' already exists; use -Force to replace it");
            if (!ShouldProcess(target, $"Write {length} bytes of guest data from '{disk.Path}'")) return;
            _outFileWritten = target;
            // A few clusters at a time: bounded memory whatever the disk size.
            int chunk = Math.Max(256 << 10, 4 * ImageInspector.PieceSize(disk));
            var buffer = new byte[(int)Math.Min(chunk, Math.Max(length, 1))];
            var progress = new ProgressReporter(this, 1, $"Reading {disk.Path}", $"Writing {target}");
            using (var output = new FileStream(target, FileMode.Create, FileAccess.Write, FileShare.Read))
            {
                for (long done = 0; done < length;)
                {
                    int n = (int)Math.Min(buffer.Length, length - done);
                    // Runs that read as zeros anywhere in the chain become holes in the output, not written zeros.
                    var extent = disk.GetChainExtent(Offset + done, n);
                    if (extent.Type != ClusterType.Normal && extent.Type != ClusterType.Compressed)
                    {
                        n = (int)extent.Length;
                    }
                    else
                    {
                        // Read data runs to their end, so the zero run after them is skipped, not written.
                        long run = extent.Length;
                        while (run < n)
                        {
                            var next = disk.GetChainExtent(Offset + done + run, n - run);
                            if (next.Type != ClusterType.Normal && next.Type != ClusterType.Compressed) break;
                            run += next.Length;
                        }
                        n = (int)Math.Min(n, run);
                        disk.Read(Offset + done, buffer, 0, n);
                        output.Position = done;
                        output.Write(buffer, 0, n);
                    }
                    done += n;
                    progress.Report(done, length);
                }
                output.SetLength(length);
            }
            progress.Complete();
        }
    }
}
