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

    public static class KernelCopy
    {
        /// <summary>The environment variable that overrides the default mode (Auto, Always, Never), for tests and the benchmark.</summary>
        public const string EnvironmentVariable = "QCOWPS_KERNEL_COPY";

        /// <summary>The mode QCOWPS_KERNEL_COPY names, or Auto when it is unset or names none.</summary>
        public static KernelCopyMode DefaultMode()
        {
            string value = Environment.GetEnvironmentVariable(EnvironmentVariable);
            return value != null && Enum.TryParse(value.Trim(), true, out KernelCopyMode mode) && Enum.IsDefined(typeof(KernelCopyMode), mode)
                ? mode : KernelCopyMode.Auto;
        }

        /// <summary>Whether a conversion into the folder of destinationPath copies stored runs in the kernel.</summary>
        public static bool UseFor(KernelCopyMode mode, string destinationPath)
        {
            switch (mode)
            {
                case KernelCopyMode.Always: return true;
                case KernelCopyMode.Never: return false;
                default: return HostFileSystem.SharesExtents(System.IO.Path.GetDirectoryName(destinationPath));
            }
        }
    }
}
