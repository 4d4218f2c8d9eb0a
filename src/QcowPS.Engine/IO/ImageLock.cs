using System;
using System.IO;
using System.Runtime.InteropServices;

namespace QcowPS.Engine.IO
{
    /// <summary>
    /// QEMU-compatible image locking (block/file-posix.c, raw_apply_lock_bytes): open-file-description
    /// byte-range locks, one byte per permission. Byte 100+n is read-locked while we hold permission n;
    /// byte 200+n while we refuse to share permission n with others. A conflict is found by asking
    /// (F_OFD_GETLK with a write lock) whether anyone else holds the opposite byte. Because QEMU uses
    /// the same bytes, a running QEMU sees our writer and we see it.
    /// On systems without OFD locks (Windows, macOS) this is a no-op; see the issue notes.
    /// </summary>
    internal sealed class ImageLock : IDisposable
    {
        // BLK_PERM_* bit numbers in QEMU's block layer.
        private const int PermConsistentRead = 0;
        private const int PermWrite = 1;
        private const int PermWriteUnchanged = 2;
        private const int PermResize = 3;
        private const int PermCount = 5;  // checks cover QEMU's older GRAPH_MOD bit too
        private const int PermBase = 100;
        private const int SharedBase = 200;

        private const int F_OFD_GETLK = 36;
        private const int F_OFD_SETLK = 37;
        private const short F_RDLCK = 0;
        private const short F_WRLCK = 1;
        private const short F_UNLCK = 2;

        [StructLayout(LayoutKind.Sequential)]
        private struct Flock
        {
            public short Type;
            public short Whence;
            public long Start;
            public long Length;
            public int Pid;
        }

        [DllImport("libc", EntryPoint = "fcntl", SetLastError = true)]
        private static extern int Fcntl(IntPtr fd, int command, ref Flock flock);

        private readonly FileStream _stream;

        private ImageLock(FileStream stream) { _stream = stream; }

        public static ImageLock Acquire(FileStream stream, string path, bool writable)
        {
            if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux)) return null;

            int held = 1 << PermConsistentRead;
            // A reader refuses writers (it wants a consistent view); a writer refuses other writers and resizers.
            int unshared = 1 << PermWrite;
            if (writable)
            {
                held |= (1 << PermWrite) | (1 << PermResize);
                unshared |= 1 << PermResize;
            }
            var result = new ImageLock(stream);
            IntPtr fd = stream.SafeFileHandle.DangerousGetHandle();
            try
            {
                for (int perm = 0; perm < PermCount; perm++)
                {
                    if ((held & (1 << perm)) != 0)
                    {
                        if (!result.SetLock(fd, PermBase + perm, F_RDLCK)) throw InUse(path, perm, writable);
                    }
                    if ((unshared & (1 << perm)) != 0)
                    {
                        if (!result.SetLock(fd, SharedBase + perm, F_RDLCK)) throw InUse(path, perm, writable);
                    }
                }
                for (int perm = 0; perm < PermCount; perm++)
                {
                    // We hold perm: nobody may have refused to share it.
                    if ((held & (1 << perm)) != 0 && IsLockedByOthers(fd, SharedBase + perm)) throw InUse(path, perm, writable);
                    // We refuse to share perm: nobody may hold it.
                    if ((unshared & (1 << perm)) != 0 && IsLockedByOthers(fd, PermBase + perm)) throw InUse(path, perm, writable);
                }
            }
            catch
            {
                result.Dispose();
                throw;
            }
            return result;
        }

        private static QcowException InUse(string path, int perm, bool writable)
        {
            string permName = perm == PermWrite ? "write" : perm == PermResize ? "resize" : perm == PermConsistentRead ? "consistent read" : "write unchanged";
            string action = writable ? "for writing" : "for reading";
            return new QcowException(QcowErrorKind.InUse, path,
                $"'{path}' is in use (another process, or another open of it in this one, holds the \"{permName}\" lock), so it cannot be opened {action}");
        }

        private bool SetLock(IntPtr fd, long offset, short type)
        {
            var fl = new Flock { Type = type, Whence = 0, Start = offset, Length = 1, Pid = 0 };
            return Fcntl(fd, F_OFD_SETLK, ref fl) == 0;
        }

        private static bool IsLockedByOthers(IntPtr fd, long offset)
        {
            var fl = new Flock { Type = F_WRLCK, Whence = 0, Start = offset, Length = 1, Pid = 0 };
            if (Fcntl(fd, F_OFD_GETLK, ref fl) != 0) return false;  // cannot tell: do not refuse
            return fl.Type != F_UNLCK;
        }

        public void Dispose()
        {
            // Closing the file description releases OFD locks; unlock explicitly in case the handle lives on.
            try
            {
                if (_stream.SafeFileHandle.IsClosed) return;
                IntPtr fd = _stream.SafeFileHandle.DangerousGetHandle();
                var fl = new Flock { Type = F_UNLCK, Whence = 0, Start = 0, Length = 0, Pid = 0 };
                Fcntl(fd, F_OFD_SETLK, ref fl);
            }
            catch (ObjectDisposedException) { }
        }
    }
}
