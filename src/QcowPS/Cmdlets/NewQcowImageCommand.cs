using System.IO;
using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.IO;
using QcowPS.Engine.Operations;
using QcowPS.Engine.Qcow2;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>
    /// Creates a qcow2 image, like qemu-img create -f qcow2. Paths are new files, taken as written, as
    /// New-Item takes them: -Path and -LiteralPath name the same file ('vm[1].qcow2' is that name).
    /// </summary>
    [Cmdlet(VerbsCommon.New, "QcowImage", DefaultParameterSetName = PathSet, SupportsShouldProcess = true)]
    [OutputType(typeof(QcowImageInfo))]
    public sealed class NewQcowImageCommand : QcowCmdlet
    {
        private const string PathSet = "Path";
        private const string LiteralPathSet = "LiteralPath";

        [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathSet, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string[] Path { get; set; }

        [Parameter(Mandatory = true, ParameterSetName = LiteralPathSet, ValueFromPipelineByPropertyName = true)]
        [Alias("PSPath", "LP", "FullName")]
        [ValidateNotNullOrEmpty]
        public string[] LiteralPath { get; set; }

        /// <summary>Virtual size; optional with -BackingFile (its size is the default).</summary>
        [Parameter(Position = 1, ValueFromPipelineByPropertyName = true)]
        [SizeTransformation]
        [ValidateRange(0, long.MaxValue)]
        public long? Size { get; set; }

        [Parameter]
        [SizeTransformation]
        [ValidateNumericChoice("ClusterSize")]
        [ArgumentCompleter(typeof(NumericChoiceCompleter))]
        public long ClusterSize { get; set; } = 65536;

        /// <summary>Backing file name, stored as given (relative names are relative to the new image).</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string BackingFile { get; set; }

        /// <summary>The format recorded for -BackingFile (stored as QEMU's name: qcow2, qed, raw); Auto probes it.</summary>
        [Parameter]
        [ValidateSet("Auto", "Qcow2", "Qed", "Raw", IgnoreCase = true)]
        public ImageFormat BackingFormat { get; set; } = ImageFormat.Auto;

        [Parameter]
        [ValidateSet("2", "3")]
        public int Version { get; set; } = 3;

        [Parameter]
        [ValidateNumericChoice("RefcountBits")]
        [ArgumentCompleter(typeof(NumericChoiceCompleter))]
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
            foreach (var typed in ParameterSetName == LiteralPathSet ? LiteralPath : Path)
                ForEachFile(new[] { ResolveNewPath(typed) }, Create);
        }

        private void Create(string path)
        {
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
                BackingFormat = ImageFormats.QemuName(BackingFormat),
                Preallocation = Preallocation,
                Overwrite = Force,
            };
            // Validate first so that -WhatIf reports the same errors a real run would.
            long size = Qcow2Creator.Validate(path, options, out _);
            NewFile.CheckCanCreate(path, Force);
            bool replacing = File.Exists(path);
            string action = $"Create a {size}-byte qcow2 v{Version} image" + (BackingFile != null ? $" backed by '{BackingFile}'" : "") +
                (replacing ? " (replacing the existing file)" : "");
            if (!ShouldProcess(path, action)) return;
            Qcow2Creator.Create(path, options);
            WriteVerbose($"Created '{path}': {size} bytes, cluster size {ClusterSize}");
            QcowImageInfo info;
            using (var disk = DiskImage.Open(path, new OpenOptions { OpenBackingChain = false }))
                info = ImageInspector.Describe(disk);
            // Emitted after closing, so the next command in the pipeline can open the image for writing.
            WriteObject(info);
        }
    }
}
