using System.IO;
using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.Operations;
using QcowPS.Engine.Qcow2;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>Creates a qcow2 image, like qemu-img create -f qcow2.</summary>
    [Cmdlet(VerbsCommon.New, "QcowImage", SupportsShouldProcess = true)]
    [OutputType(typeof(QcowImageInfo))]
    public sealed class NewQcowImageCommand : QcowCmdlet
    {
        [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string Path { get; set; }

        /// <summary>Virtual size; optional with -BackingFile (its size is the default).</summary>
        [Parameter(Position = 1, ValueFromPipelineByPropertyName = true)]
        [SizeTransformation]
        [ValidateRange(0, long.MaxValue)]
        public long? Size { get; set; }

        [Parameter]
        [SizeTransformation]
        [ValidateSet("512", "1024", "2048", "4096", "8192", "16384", "32768", "65536", "131072", "262144", "524288", "1048576", "2097152")]
        public long ClusterSize { get; set; } = 65536;

        /// <summary>Backing file name, stored as given (relative names are relative to the new image).</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string BackingFile { get; set; }

        [Parameter]
        [ValidateSet("qcow2", "qed", "raw")]
        public string BackingFormat { get; set; }

        [Parameter]
        [ValidateSet("2", "3")]
        public int Version { get; set; } = 3;

        [Parameter]
        [ValidateSet("1", "2", "4", "8", "16", "32", "64")]
        public int RefcountBits { get; set; } = 16;

        [Parameter]
        public SwitchParameter LazyRefcounts { get; set; }

        [Parameter]
        public SwitchParameter ExtendedL2 { get; set; }

        [Parameter]
        public Qcow2CompressionType CompressionType { get; set; } = Qcow2CompressionType.Zlib;

        [Parameter]
        public Preallocation Preallocation { get; set; } = Preallocation.Off;

        /// <summary>Replace an existing file.</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        protected override void ProcessRecord()
        {
            string path = ResolveNewPath(Path);
            var options = new Qcow2CreateOptions
            {
                Size = Size,
                ClusterSize = (int)ClusterSize,
                Version = Version,
                RefcountBits = RefcountBits,
                LazyRefcounts = LazyRefcounts,
                ExtendedL2 = ExtendedL2,
                CompressionType = CompressionType,
                BackingFile = BackingFile,
                BackingFormat = BackingFormat,
                Preallocation = Preallocation,
                Overwrite = Force,
            };
            ForEachFile(new[] { path }, p =>
            {
                // Validate first so that -WhatIf reports the same errors a real run would.
                long size = Qcow2Creator.Validate(p, options, out _);
                if (File.Exists(p) && !Force)
                    throw new QcowException(QcowErrorKind.AlreadyExists, p, $"'{p}' already exists; use -Force to replace it");
                string action = $"Create a {size}-byte qcow2 v{Version} image" + (BackingFile != null ? $" backed by '{BackingFile}'" : "") +
                    (File.Exists(p) ? " (replacing the existing file)" : "");
                if (!ShouldProcess(p, action)) return;
                Qcow2Creator.Create(p, options);
                QcowImageInfo info;
                using (var disk = DiskImage.Open(p, new OpenOptions { OpenBackingChain = false }))
                    info = ImageInspector.Describe(disk);
                // Emitted after closing, so the next command in the pipeline can open the image for writing.
                WriteObject(info);
            });
        }
    }
}
