using System.Management.Automation;

namespace QcowPS.Cmdlets
{
    /// <summary>Clears every bit of a persistent bitmap, like qemu-img bitmap --clear.</summary>
    [Cmdlet(VerbsCommon.Clear, "QcowBitmap", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(void))]
    public sealed class ClearQcowBitmapCommand : BitmapCmdlet
    {
        protected override void ProcessImage(string path) => Change(path, $"Clear bitmap '{Name}' (forget what it recorded)", image => image.ClearBitmap(Name));
    }
}
