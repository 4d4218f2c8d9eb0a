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
            using (var image = OpenQcow2(path, writable: true))
            {
                long size = (Size + 511) & ~511L;
                if (size < image.Length && !AllowShrink)
                    throw new QcowException(QcowErrorKind.InvalidArgument, path,
                        $"Shrinking '{path}' from {image.Length} to {size} bytes loses data; use -AllowShrink to do it anyway");
                if (!ShouldProcess(path, $"Resize from {image.Length} to {size} bytes")) return;
                image.Resize(size, AllowShrink);
                WriteObject(ImageInspector.Describe(image));
            }
        }
    }
}
