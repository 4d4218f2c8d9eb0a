using System;
using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.Guest.Partitions;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Cmdlets
{
    /// <summary>Base of the cmdlets that look inside the guest disk (read-only): -Snapshot and -Format, and the table's warnings.</summary>
    public abstract class GuestReadCmdlet : ReadImageCmdlet
    {
        /// <summary>Look inside an internal snapshot instead of the current disk.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string Snapshot { get; set; }

        [Parameter]
        public ImageFormat Format { get; set; } = ImageFormat.Auto;

        /// <summary>Opens the image (or its snapshot) read-only, runs look, and closes it again.</summary>
        protected void Inspect(string path, Action<VirtualDisk> look)
        {
            using (var image = DiskImage.Open(path, ReadOptions(Format)))
            {
                if (Snapshot == null) { look(image); return; }
                if (!(image is Qcow2Image q))
                    throw new QcowException(QcowErrorKind.InvalidArgument, path, $"'{path}' is a {image.Format} image, which has no internal snapshots");
                using (var view = q.OpenSnapshot(Snapshot)) look(view);
            }
        }

        protected void WarnAbout(string path, PartitionTable table)
        {
            foreach (var w in table.Warnings) WriteWarning($"{path}: {w}");
        }
    }
}
