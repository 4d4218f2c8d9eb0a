using System.Management.Automation;

namespace QcowPS.Cmdlets
{
    /// <summary>Sets in one bitmap every bit set in another of the same image, like qemu-img bitmap --merge.</summary>
    [Cmdlet(VerbsData.Merge, "QcowBitmap", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
    [OutputType(typeof(void))]
    public sealed class MergeQcowBitmapCommand : BitmapCmdlet
    {
        /// <summary>The bitmap that receives the bits (the source is -Name).</summary>
        [Parameter(Mandatory = true, Position = 2)]
        [ValidateNotNullOrEmpty]
        public string Target { get; set; }

        protected override void ProcessImage(string path) =>
            Change(path, $"Merge bitmap '{Name}' into bitmap '{Target}'", image => image.MergeBitmap(Target, Name));
    }
}
