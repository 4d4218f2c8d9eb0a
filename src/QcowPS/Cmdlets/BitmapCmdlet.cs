using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Cmdlets
{
    /// <summary>
    /// Shared by the cmdlets that change one named bitmap (Remove-, Clear-, Enable-, Disable-,
    /// Merge-QcowBitmap): the bitmap by -Name, bound by property name from Get-QcowBitmap.
    /// </summary>
    public abstract class BitmapCmdlet : ImageCmdlet
    {
        [Parameter(Mandatory = true, Position = 1, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string Name { get; set; }

        /// <summary>
        /// Checks the bitmap exists on a read-only open, asks ShouldProcess, and only then opens the
        /// image for writing (a writable open may repair a dirty image, which -WhatIf must not do).
        /// </summary>
        protected void Change(string path, string action, System.Action<Qcow2Image> change)
        {
            using (var image = OpenQcow2(path))
            {
                if (image.FindBitmap(Name) == null)
                    throw new QcowException(QcowErrorKind.BitmapNotFound, path, $"No bitmap named '{Name}' in '{path}'");
            }
            if (!ShouldProcess(path, action)) return;
            using (var image = OpenQcow2(path, writable: true)) change(image);
        }
    }
}
