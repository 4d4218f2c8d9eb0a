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
            // Describe, close, then emit: a command later in the pipeline may want to open the image for writing.
            var results = new System.Collections.Generic.List<QcowImageInfo>();
            if (BackingChain)
            {
                // Layer by layer: the layers that open are emitted even when a deeper one is missing, then the error.
                try
                {
                    ImageInspector.DescribeChain(path, options, results);
                }
                finally
                {
                    foreach (var info in results)
                    {
                        WriteVerbose($"Opened '{info.Path}' as {ImageFormats.QemuName(info.Format)}");
                        WriteObject(info);
                    }
                }
                return;
            }
            // Like qemu-img info: the image's own fields need no backing file.
            options.OpenBackingChain = false;
            using (var disk = OpenImage(path, options)) results.Add(ImageInspector.Describe(disk));
            foreach (var info in results) WriteObject(info);
        }
    }
}
