using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.Operations;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>Changes the virtual size, like qemu-img resize.</summary>
    [Cmdlet(VerbsCommon.Resize, "QcowImage", DefaultParameterSetName = PathSet, SupportsShouldProcess = true)]
    [OutputType(typeof(QcowImageInfo))]
    public sealed class ResizeQcowImageCommand : ImageCmdlet
    {
        [Parameter(Mandatory = true, Position = 1)]
        [SizeTransformation]
        [ValidateRange(0, long.MaxValue)]
        public long Size { get; set; }

        /// <summary>Allow a smaller size (data past the new end is lost).</summary>
        [Parameter]
        public SwitchParameter AllowShrink { get; set; }

        protected override void ProcessImage(string path)
        {
            long size, current;
            using (var image = OpenQcow2(path))
            {
                current = image.Length;
                size = image.CheckResize(Size, AllowShrink);
            }
            if (!ShouldProcess(path, $"Resize from {current} to {size} bytes")) return;
            QcowImageInfo info;
            using (var image = OpenQcow2(path, writable: true))
            {
                image.Resize(size, AllowShrink);
                WriteVerbose($"Resized '{path}' from {current} to {size} bytes");
                info = ImageInspector.Describe(image);
            }
            WriteObject(info);
        }
    }
}
