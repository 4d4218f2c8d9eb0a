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
