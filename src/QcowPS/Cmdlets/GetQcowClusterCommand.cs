using System;
using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.Operations;
using QcowPS.Engine.Qcow2;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>Lists guest clusters with their L2 entries decoded, or merged extents like qemu-img map.</summary>
    [Cmdlet(VerbsCommon.Get, "QcowCluster", DefaultParameterSetName = PathSet)]
    [OutputType(typeof(QcowCluster))]
    public sealed class GetQcowClusterCommand : ReadImageCmdlet
    {
        [Parameter]
        [SizeTransformation]
        [ValidateRange(0, long.MaxValue)]
        public long Offset { get; set; }

        [Parameter]
        [SizeTransformation]
        [ValidateRange(1, long.MaxValue)]
        public long Length { get; set; } = long.MaxValue;

        /// <summary>Merge runs across the backing chain, like qemu-img map.</summary>
        [Parameter]
        public SwitchParameter Extent { get; set; }

        /// <summary>Skip clusters with no L2 entry (fast on large sparse images).</summary>
        [Parameter]
        public SwitchParameter Allocated { get; set; }

        [Parameter]
        public ImageFormat Format { get; set; } = ImageFormat.Auto;

        protected override void ProcessImage(string path)
        {
            var options = ReadOptions(Format);
            options.OpenBackingChain = Extent.IsPresent;
            using (var disk = DiskImage.Open(path, options))
            {
                if (Offset > disk.Length)
                    throw new QcowException(QcowErrorKind.InvalidArgument, path, $"Offset {Offset} is past the end of the disk ({disk.Length} bytes)");
                long length = Math.Min(Length, disk.Length - Offset);
                if (Extent)
                {
                    foreach (var e in ImageInspector.Extents(disk, Offset, length))
                    {
                        if (Allocated && e.ClusterType == ClusterType.Unallocated) continue;
                        // Extents have their own view: the per-cluster columns (refcount, L2 entry) mean nothing here.
                        var item = PSObject.AsPSObject(e);
                        item.TypeNames.Insert(0, "QcowPS.QcowCluster#Extent");
                        WriteObject(item);
                    }
                    return;
                }
                if (!(disk is Qcow2Image image))
                    throw new QcowException(QcowErrorKind.InvalidArgument, path, $"'{path}' is a {disk.Format} image; only qcow2 images have L2 entries (use -Extent for the allocation map)");
                foreach (var c in ImageInspector.Clusters(image, Offset, length, Allocated))
                {
                    if (Stopping) return;
                    WriteObject(c);
                }
            }
        }
    }
}
