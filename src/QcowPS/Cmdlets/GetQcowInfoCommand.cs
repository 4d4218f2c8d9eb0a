using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.Operations;

namespace QcowPS.Cmdlets
{
    /// <summary>Describes images, like qemu-img info.</summary>
    [Cmdlet(VerbsCommon.Get, "QcowInfo", DefaultParameterSetName = PathSet)]
    [OutputType(typeof(QcowImageInfo))]
    public sealed class GetQcowInfoCommand : ImageCmdlet
    {
        /// <summary>One object per layer of the backing chain, top first.</summary>
        [Parameter]
        public SwitchParameter BackingChain { get; set; }

        [Parameter]
        public ImageFormat Format { get; set; } = ImageFormat.Auto;

        protected override void ProcessImage(string path)
        {
            var options = ReadOptions(Format);
            // Like qemu-img info: the image's own fields need no backing file; -BackingChain opens them all.
            options.OpenBackingChain = BackingChain.IsPresent;
            using (var disk = DiskImage.Open(path, options))
            {
                if (!BackingChain)
                {
                    WriteObject(ImageInspector.Describe(disk));
                    return;
                }
                foreach (var layer in DiskImage.Layers(disk)) WriteObject(ImageInspector.Describe(layer));
            }
        }
    }
}
