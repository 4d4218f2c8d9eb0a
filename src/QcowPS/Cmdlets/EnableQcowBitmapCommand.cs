using System.Management.Automation;

namespace QcowPS.Cmdlets
{
    /// <summary>Makes a persistent bitmap record writes again (auto), like qemu-img bitmap --enable.</summary>
    [Cmdlet(VerbsLifecycle.Enable, "QcowBitmap", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
    [OutputType(typeof(void))]
    public sealed class EnableQcowBitmapCommand : BitmapCmdlet
    {
        protected override void ProcessImage(string path) => Change(path, $"Enable bitmap '{Name}'", image => image.SetBitmapEnabled(Name, true));
    }
}
