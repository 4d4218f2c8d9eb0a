using System;
using System.Collections.Generic;
using System.IO;
using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.IO;
using QcowPS.Engine.Operations;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>
    /// Writes guest data at an offset (like qemu-io -c write, nbd_pwrite): -Data, the bytes of -InputFile,
    /// zeros with -Zero, or gives a range back with -Discard (qemu-io -c discard, NBD TRIM). A file with
    /// no known magic is written only when -Format Raw says it is raw.
    /// </summary>
    /// <remarks>
    /// The image comes from -Path/-LiteralPath or the pipeline, like every image cmdlet, so what is
    /// written is chosen by -Data, -InputFile, -Zero or -Discard (one of them) rather than by parameter sets,
    /// which would have to multiply with the path sets. Bytes piped in (when -Data is not given) are
    /// collected and written once at the end, to the images named on the command line.
    /// </remarks>
    [Cmdlet(VerbsCommunications.Write, "QcowBlock", DefaultParameterSetName = PathSet, SupportsShouldProcess = true)]
    [OutputType(typeof(QcowBlock))]
    public sealed class WriteQcowBlockCommand : ImageCmdlet
    {
        [Parameter(Position = 1)]
        [SizeTransformation]
        [ValidateRange(0, long.MaxValue)]
        public long Offset { get; set; }

        /// <summary>Bytes to write: a byte[] (whole, or byte by byte from the pipeline).</summary>
        [Parameter(Position = 2, ValueFromPipeline = true)]
        [AllowEmptyCollection]
        public byte[] Data { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        public string InputFile { get; set; }

        [Parameter]
        public SwitchParameter Zero { get; set; }

        /// <summary>
        /// Gives -Length bytes back as qemu-io's discard does: whole clusters of a qcow2 image become zero
        /// clusters (v3) or unallocated, a raw file gets a hole, an NBD export a TRIM; a format or server
        /// that cannot discard leaves the range as it is.
        /// </summary>
        [Parameter]
        public SwitchParameter Discard { get; set; }

        /// <summary>Bytes to zero (with -Zero) or discard (with -Discard).</summary>
        [Parameter]
        [SizeTransformation]
        [ValidateRange(1, long.MaxValue)]
        public long Length { get; set; }

        /// <summary>The image's format; Auto reads the magic, and a file without one needs -Format Raw.</summary>
        [Parameter]
        public ImageFormat Format { get; set; } = ImageFormat.Auto;

        [Parameter]
        public SwitchParameter PassThru { get; set; }

        private readonly List<byte[]> _pieces = new List<byte[]>();
        private long _pieceBytes;
        private bool _dataFromPipeline;
        private string _input;

        protected override void BeginProcessing()
        {
            base.BeginProcessing();
            int sources = (MyInvocation.BoundParameters.ContainsKey("Data") ? 1 : 0) + (InputFile != null ? 1 : 0) + (Zero ? 1 : 0) + (Discard ? 1 : 0);
            if (sources > 1)
                ThrowTerminatingError(ErrorRecords.Argument("ConflictingParameters", null, "Give one of -Data, -InputFile, -Zero and -Discard."));
            if ((Zero || Discard) && !MyInvocation.BoundParameters.ContainsKey("Length"))
                ThrowTerminatingError(ErrorRecords.Argument("MissingLength", null, Zero ? "-Zero needs -Length: how many bytes to zero." : "-Discard needs -Length: how many bytes to discard."));
            if (!Zero && !Discard && MyInvocation.BoundParameters.ContainsKey("Length"))
                ThrowTerminatingError(ErrorRecords.Argument("ConflictingParameters", null, "-Length goes with -Zero or -Discard (the length of -Data and -InputFile is theirs)."));
            _dataFromPipeline = sources == 0;
            if (_dataFromPipeline && !MyInvocation.BoundParameters.ContainsKey("Path") && !MyInvocation.BoundParameters.ContainsKey("LiteralPath"))
                ThrowTerminatingError(ErrorRecords.Argument("MissingData", null, "Give the bytes with -Data, -InputFile or -Zero (or pipe bytes to it with -Path given)."));
            if (InputFile != null)
            {
                var inputs = ResolveExistingPaths(new[] { InputFile }, true);
                if (inputs.Count != 1) ThrowTerminatingError(ErrorRecords.Make("FileNotFound", ErrorCategory.ObjectNotFound, InputFile, $"-InputFile '{InputFile}' was not found."));
                _input = inputs[0];
            }
        }

        protected override void ProcessRecord()
        {
            if (!_dataFromPipeline)
            {
                ForEachFile(OneImage(), ProcessImage);
                return;
            }
            // Piped byte arrays arrive one byte (or one array) at a time: collect them, write once at the end.
            if (Data != null)
            {
                _pieces.Add(Data);
                _pieceBytes += Data.Length;
            }
        }

        protected override void EndProcessing()
        {
            if (!_dataFromPipeline) return;
            Data = Join();
            ForEachFile(OneImage(), ProcessImage);
        }

        protected override void ProcessImage(string path)
        {
            long length = Zero || Discard ? Length : _input != null ? new FileInfo(_input).Length : Data.Length;
            string what = Zero ? $"Zero {length} bytes at offset {Offset}"
                : Discard ? $"Discard {length} bytes at offset {Offset}"
                : _input != null ? $"Write {length} bytes from '{_input}' at offset {Offset}"
                : $"Write {length} bytes at offset {Offset}";

            // Check the range on a read-only open first: -WhatIf must not open the image for writing (a
            // writable open may repair a dirty image). No lock: a writer holding the image is refused by
            // the writable open below, with a message about writing.
            using (var probe = OpenImage(path, new OpenOptions { Format = Format, OpenBackingChain = false, Lock = LockMode.None }))
            {
                if (Offset > probe.Length || length > probe.Length - Offset)
                    throw new QcowException(QcowErrorKind.InvalidArgument, probe.Path,
                        $"Offset {Offset} and length {length} reach past the end of the disk ({probe.Length} bytes) of '{probe.Path}'");
                if (probe is Engine.Qcow2.Qcow2Image q && q.Header.BitmapCount > 0)
                    WriteWarning($"'{probe.Path}' has {q.Header.BitmapCount} persistent dirty bitmap(s); QcowPS does not update them, so after this write they no longer list every changed block (QEMU treats them as inconsistent).");
            }
            if (!ShouldProcess(path, what)) return;
            var written = new List<QcowBlock>();
            using (var disk = OpenImage(path, new OpenOptions { Format = Format, Writable = true }))
            {
                if (Zero) disk.WriteZeroes(Offset, length);
                else if (Discard) disk.Discard(Offset, length);
                else if (_input != null)
                {
                    var progress = new ProgressReporter(this, 2, $"Writing {disk.Path}", $"From {_input}");
                    using (var source = new FileStream(_input, FileMode.Open, FileAccess.Read, FileShare.Read))
                        DiskStreamWriter.Write(disk, Offset, source, length, progress.Report);
                    progress.Complete();
                }
                else disk.Write(Offset, Data, 0, Data.Length);
                disk.Flush();
                WriteVerbose($"{what} of '{disk.Path}'");
                if (PassThru) written.AddRange(ImageInspector.Blocks(disk, Offset, length, ImageInspector.PieceSize(disk)));
            }
            foreach (var block in written) WriteObject(block);
        }

        /// <summary>The image of this record: a wildcard that matches several images is refused, never written to all of them.</summary>
        private List<string> OneImage()
        {
            var files = ResolveInputPaths();
            if (files.Count > 1)
                ThrowTerminatingError(ErrorRecords.Argument("OneImageOnly", files[0],
                    $"'{string.Join("', '", IsLiteral ? LiteralPath : Path)}' matches {files.Count} images; Write-QcowBlock writes to one at a time."));
            return files;
        }

        private byte[] Join()
        {
            if (_pieces.Count == 1) return _pieces[0];
            var all = new byte[_pieceBytes];
            long at = 0;
            foreach (var p in _pieces)
            {
                Array.Copy(p, 0, all, at, p.Length);
                at += p.Length;
            }
            return all;
        }
    }
}
