using System.Management.Automation;
using QcowPS.Engine.Operations;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>Adds an empty persistent dirty bitmap, like qemu-img bitmap --add.</summary>
    [Cmdlet(VerbsCommon.New, "QcowBitmap", DefaultParameterSetName = PathSet, SupportsShouldProcess = true)]
    [OutputType(typeof(QcowBitmap))]
    public sealed class NewQcowBitmapCommand : ImageCmdlet
    {
        [Parameter(Mandatory = true, Position = 1)]
        [ValidateNotNullOrEmpty]
        public string Name { get; set; }

        /// <summary>Bytes per bit: a power of two from 512 bytes to 2 GiB; default as QEMU (the cluster size within 4 KiB..64 KiB).</summary>
        [Parameter]
        [SizeTransformation]
        public long? Granularity { get; set; }

        /// <summary>Create it disabled (not recording writes), like qemu-img bitmap --add --disable.</summary>
        [Parameter]
        public SwitchParameter Disabled { get; set; }

        protected override void BeginProcessing()
        {
            if (Granularity.HasValue && (Granularity < 512 || Granularity > (2L << 30) || (Granularity & (Granularity - 1)) != 0))
                ThrowTerminatingError(ErrorRecords.Argument("InvalidGranularity", Granularity,
                    $"-Granularity {Granularity} is not a power of two from 512 bytes to 2 GiB."));
        }

        protected override void ProcessImage(string path)
        {
            using (OpenQcow2(path)) { }  // a missing or non-qcow2 file is an error even with -WhatIf
            if (!ShouldProcess(path, $"Add {(Disabled ? "disabled" : "enabled")} bitmap '{Name}'")) return;
            int? bits = null;
            if (Granularity.HasValue) for (bits = 0; (1L << bits.Value) < Granularity.Value; bits++) { }
            QcowBitmap created;
            using (var image = OpenQcow2(path, writable: true))
                created = BitmapInspector.Describe(image, image.AddBitmap(Name, bits, !Disabled));
            WriteObject(created);
        }
    }
}
