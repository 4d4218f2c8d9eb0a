using System;

namespace QcowPS.Engine.IO
{
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
