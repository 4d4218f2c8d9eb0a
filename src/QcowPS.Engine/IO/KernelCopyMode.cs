using System;

namespace QcowPS.Engine.IO
{
    /// <summary>
    /// Whether runs of stored data are copied inside the kernel (copy_file_range) instead of being
    /// written from the buffer they were read into.
    /// </summary>
    public enum KernelCopyMode
    {
        /// <summary>
        /// Only where the destination's file system shares extents (XFS, btrfs, NFS 4.2): there the copy
        /// moves no data. On ext4 and tmpfs the kernel copies page by page, measured no faster than
        /// writing the buffer the conversion has read anyway (for zero detection).
        /// </summary>
        Auto,
        Always,
        Never,
    }

}
