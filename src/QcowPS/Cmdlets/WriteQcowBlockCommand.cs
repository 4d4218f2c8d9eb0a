using System;
using System.Collections.Generic;
using System.IO;
using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.Operations;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>Writes guest data at an offset (like qemu-io -c write, nbd_pwrite), or zeros with -Zero.</summary>
    [Cmdlet(VerbsCommunications.Write, "QcowBlock", DefaultParameterSetName = DataSet, SupportsShouldProcess = true)]
    [OutputType(typeof(QcowBlock))]
    public sealed class WriteQcowBlockCommand : QcowCmdlet
    {
        private const string DataSet = "Data";
        private const string FileSet = "InputFile";
        private const string ZeroSet = "Zero";

        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [SupportsWildcards]
        public string Path { get; set; }

        [Parameter(Position = 1)]
        [SizeTransformation]
        [ValidateRange(0, long.MaxValue)]
        public long Offset { get; set; }

        /// <summary>Bytes to write: a byte[] (whole, or byte by byte from the pipeline).</summary>
        [Parameter(Mandatory = true, Position = 2, ParameterSetName = DataSet, ValueFromPipeline = true)]
        [AllowEmptyCollection]
        public byte[] Data { get; set; }

        [Parameter(Mandatory = true, ParameterSetName = FileSet)]
        [ValidateNotNullOrEmpty]
        public string InputFile { get; set; }

        [Parameter(Mandatory = true, ParameterSetName = ZeroSet)]
        public SwitchParameter Zero { get; set; }

        [Parameter(Mandatory = true, ParameterSetName = ZeroSet)]
        [SizeTransformation]
        [ValidateRange(1, long.MaxValue)]
        public long Length { get; set; }

        [Parameter]
        public SwitchParameter PassThru { get; set; }

        private readonly List<byte[]> _pieces = new List<byte[]>();
        private long _pieceBytes;

        protected override void ProcessRecord()
        {
            // Piped byte arrays arrive one byte (or one array) at a time: collect them, write once at the end.
            if (ParameterSetName == DataSet && Data != null)
            {
                _pieces.Add(Data);
                _pieceBytes += Data.Length;
            }
        }

        protected override void EndProcessing()
        {
            var files = ResolveExistingPaths(new[] { Path }, false);
            if (files.Count > 1)
                ThrowTerminatingError(ErrorRecords.Argument("OneImageOnly", Path, $"'{Path}' matches {files.Count} images; Write-QcowBlock writes to one."));
            ForEachFile(files, WriteTo);
        }

        private void WriteTo(string path)
        {
            long length;
            string what;
            string input = null;
            if (ParameterSetName == ZeroSet)
            {
                length = Length;
                what = $"Zero {length} bytes at offset {Offset}";
            }
            else if (ParameterSetName == FileSet)
            {
                input = ResolveExistingPaths(new[] { InputFile }, true).Count == 1 ? SessionState.Path.GetUnresolvedProviderPathFromPSPath(InputFile) : null;
                if (input == null) return;
                length = new FileInfo(input).Length;
                what = $"Write {length} bytes from '{input}' at offset {Offset}";
            }
            else
            {
                length = _pieceBytes;
                what = $"Write {length} bytes at offset {Offset}";
            }

            // Check the range on a read-only open first: -WhatIf must not open the image for writing
            // (a writable open may repair a dirty image).
            using (var probe = DiskImage.Open(path, new OpenOptions { OpenBackingChain = false }))
            {
                if (Offset > probe.Length || length > probe.Length - Offset)
                    throw new QcowException(QcowErrorKind.InvalidArgument, path,
                        $"Offset {Offset} and length {length} reach past the end of the disk ({probe.Length} bytes) of '{path}'");
            }
            if (!ShouldProcess(path, what)) return;
            var written = new List<QcowBlock>();
            using (var disk = DiskImage.Open(path, new OpenOptions { Writable = true }))
            {
                if (ParameterSetName == ZeroSet) disk.WriteZeroes(Offset, length);
                else if (ParameterSetName == FileSet) CopyFromFile(disk, input, length);
                else
                {
                    long at = Offset;
                    var joined = Join();
                    disk.Write(at, joined, 0, joined.Length);
                }
                disk.Flush();
                if (PassThru) written.AddRange(ImageInspector.Blocks(disk, Offset, length, ImageInspector.PieceSize(disk)));
            }
            foreach (var block in written) WriteObject(block);
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

        private void CopyFromFile(VirtualDisk disk, string input, long length)
        {
            var buffer = new byte[(int)Math.Min(4 << 20, Math.Max(1, length))];
            var progress = new ProgressReporter(this, 2, $"Writing {disk.Path}", $"From {input}");
            using (var source = new FileStream(input, FileMode.Open, FileAccess.Read, FileShare.Read))
            {
                for (long done = 0; done < length;)
                {
                    int n = source.Read(buffer, 0, (int)Math.Min(buffer.Length, length - done));
                    if (n <= 0) break;
                    if (IsZero(buffer, n)) disk.WriteZeroes(Offset + done, n);
                    else disk.Write(Offset + done, buffer, 0, n);
                    done += n;
                    progress.Report(done, length);
                }
            }
            progress.Complete();
        }

        private static bool IsZero(byte[] buffer, int count)
        {
            for (int i = 0; i < count; i++) if (buffer[i] != 0) return false;
            return true;
        }
    }
}
