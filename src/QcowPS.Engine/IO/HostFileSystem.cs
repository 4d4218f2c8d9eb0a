using System;
using System.IO;
using System.Runtime.InteropServices;

namespace QcowPS.Engine.IO
{
    /// <summary>File-system facts the .NET API does not give: allocated size (qemu-img's actual-size).</summary>
    public static class HostFileSystem
    {
        [DllImport("libc", EntryPoint = "stat", SetLastError = true)]
        private static extern int Stat(string path, byte[] buffer);

        [DllImport("libc", EntryPoint = "statfs", SetLastError = true)]
        private static extern int StatFs(string path, byte[] buffer);

        // statfs f_type magic numbers (linux/magic.h) of file systems whose copy_file_range shares extents.
        private const long XfsMagic = 0x58465342, BtrfsMagic = 0x9123683E, NfsMagic = 0x6969;

        /// <summary>
        /// Whether the file system holding path shares extents on copy_file_range (XFS, btrfs, NFS 4.2
        /// server-side copy), so that a kernel copy moves no data. False where it cannot tell.
        /// </summary>
        public static bool SharesExtents(string path)
        {
            if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux) ||
                !(RuntimeInformation.ProcessArchitecture == Architecture.X64 || RuntimeInformation.ProcessArchitecture == Architecture.Arm64))
                return false;
            try
            {
                // struct statfs on x86_64 and aarch64 Linux: f_type is the 8 bytes at offset 0.
                var buffer = new byte[256];
                if (StatFs(string.IsNullOrEmpty(path) ? "." : path, buffer) != 0) return false;
                long type = BitConverter.ToInt64(buffer, 0);
                return type == XfsMagic || type == BtrfsMagic || type == NfsMagic;
            }
            catch (EntryPointNotFoundException) { return false; }
            catch (DllNotFoundException) { return false; }
        }

        /// <summary>Bytes the file occupies on disk (st_blocks * 512 on Linux); its length elsewhere.</summary>
        public static long GetAllocatedSize(string path)
        {
            if (RuntimeInformation.IsOSPlatform(OSPlatform.Linux) &&
                (RuntimeInformation.ProcessArchitecture == Architecture.X64 || RuntimeInformation.ProcessArchitecture == Architecture.Arm64))
            {
                try
                {
                    // struct stat on x86_64 and aarch64 Linux: st_blocks is the 8 bytes at offset 64.
                    var buffer = new byte[256];
                    if (Stat(path, buffer) == 0) return BitConverter.ToInt64(buffer, 64) * 512;
                }
                catch (EntryPointNotFoundException) { }
                catch (DllNotFoundException) { }
            }
            try { return new FileInfo(path).Length; }
            catch (IOException) { return 0; }
        }
    }
}
