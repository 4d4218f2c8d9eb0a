using System.Management.Automation;

namespace QcowPS.Cmdlets
{
    /// <summary>Removes a persistent bitmap, like qemu-img bitmap --remove.</summary>
    [Cmdlet(VerbsCommon.Remove, "QcowBitmap", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(void))]
    public sealed class RemoveQcowBitmapCommand : BitmapCmdlet
    {
        protected override void ProcessImage(string path) => Change(path, $"Remove bitmap '{Name}'", image => image.RemoveBitmap(Name));
    }
}
