using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.Operations;

namespace QcowPS.Cmdlets
{
    /// <summary>Describes images, like qemu-img info.</summary>
    [Cmdlet(VerbsCommon.Get, "QcowInfo", DefaultParameterSetName = PathSet)]
    [OutputType(typeof(QcowImageInfo))]
    public sealed class GetQcowInfoCommand : ReadImageCmdlet
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
            // Describe, close, then emit: a command later in the pipeline may want to open the image for writing.
            var results = new System.Collections.Generic.List<QcowImageInfo>();
            using (var disk = DiskImage.Open(path, options))
            {
                if (!BackingChain) results.Add(ImageInspector.Describe(disk));
                else foreach (var layer in DiskImage.Layers(disk)) results.Add(ImageInspector.Describe(layer));
            }
            foreach (var info in results) WriteObject(info);
        }
    }
}
