using System.Management.Automation;

namespace QcowPS.Cmdlets
{
    /// <summary>Stops a persistent bitmap from recording writes, like qemu-img bitmap --disable.</summary>
    [Cmdlet(VerbsLifecycle.Disable, "QcowBitmap", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
    [OutputType(typeof(void))]
    public sealed class DisableQcowBitmapCommand : BitmapCmdlet
    {
        protected override void ProcessImage(string path) => Change(path, $"Disable bitmap '{Name}'", image => image.SetBitmapEnabled(Name, false));
    }
}
