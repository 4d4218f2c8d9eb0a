using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Threading;

namespace QcowPS.Engine.IO
{
    /// <summary>A host file on the local file system.</summary>
    public sealed class FileHostFile : IHostFile
    {
        private readonly FileStream _stream;
        private readonly object _gate = new object();
        private ImageLock _lock;
        private long _length;

        public string Path { get; }
        public bool CanWrite { get; }

        private FileHostFile(string path, FileStream stream, bool canWrite)
        {
            Path = path;
            _stream = stream;
            CanWrite = canWrite;
            _length = stream.Length;
        }

        /// <summary>
        /// The sharing a FileStream allows others. On Linux everything: QEMU's byte-range locks (ImageLock)
        /// decide, as QEMU's own opens do. Elsewhere (Windows) there are no OFD locks, so the operating
        /// system's sharing keeps a second writer out: with locks we let others read only (a reader
        /// also refuses writers, as QEMU's reader does); -ForceShare (LockMode.None) shares everything.
        /// </summary>
        private static FileShare ShareFor(LockMode lockMode) =>
            RuntimeInformation.IsOSPlatform(OSPlatform.Linux) || lockMode == LockMode.None
                ? FileShare.ReadWrite | FileShare.Delete
                : FileShare.Read | FileShare.Delete;

        /// <summary>Windows' ERROR_SHARING_VIOLATION and ERROR_LOCK_VIOLATION: another open refuses ours.</summary>
        private static bool IsSharingViolation(IOException e)
        {
            int code = e.HResult & 0xFFFF;
            return !RuntimeInformation.IsOSPlatform(OSPlatform.Linux) && (code == 32 || code == 33);
        }

        /// <summary>Opens an existing file, taking QEMU-compatible locks unless lockMode is None.</summary>
        public static FileHostFile Open(string path, bool writable, LockMode lockMode = LockMode.Default)
        {
            if (!File.Exists(path))
            {
                if (Directory.Exists(path))
                    throw new QcowException(QcowErrorKind.InvalidArgument, path, $"'{path}' is a directory, not an image file");
                throw new QcowException(QcowErrorKind.NotFound, path, $"Image file '{path}' does not exist");
            }
            FileStream stream;
            try
            {
                // No FileStream buffering: the engine does its own large, positioned I/O.
                stream = new FileStream(path, FileMode.Open, writable ? FileAccess.ReadWrite : FileAccess.Read,
                    ShareFor(lockMode), 1, FileOptions.None);
            }
            catch (UnauthorizedAccessException e)
            {
                throw QcowException.Io(QcowOperation.Open, path, $"Access to '{path}' is denied: {e.Message}", e);
            }
            catch (IOException e) when (IsSharingViolation(e))
            {
                throw new QcowException(QcowErrorKind.InUse, path,
                    $"'{path}' is in use (another process has it open for writing, or holds it while we write), so it cannot be opened {(writable ? "for writing" : "for reading")}", e);
            }
            catch (IOException e)
            {
                throw QcowException.Io(QcowOperation.Open, path, $"Cannot open '{path}': {e.Message}", e);
            }
            var file = new FileHostFile(path, stream, writable);
            if (lockMode != LockMode.None)
            {
                try { file._lock = ImageLock.Acquire(stream, path, writable); }
                catch { stream.Dispose(); throw; }
            }
            return file;
        }

        /// <summary>Creates a new file (fails if it exists unless overwrite), locked for writing.</summary>
        public static FileHostFile Create(string path, bool overwrite)
        {
            FileStream stream;
            try
            {
                stream = new FileStream(path, overwrite ? FileMode.Create : FileMode.CreateNew, FileAccess.ReadWrite,
                    ShareFor(LockMode.Default), 1, FileOptions.None);
            }
            catch (IOException e) when (!overwrite && File.Exists(path))
            {
                throw new QcowException(QcowErrorKind.AlreadyExists, path, $"'{path}' already exists", e);
            }
            catch (DirectoryNotFoundException e)
            {
                throw new QcowException(QcowErrorKind.NotFound, path, $"The folder of '{path}' does not exist", e);
            }
            catch (UnauthorizedAccessException e)
            {
                throw QcowException.Io(QcowOperation.Create, path, $"Access to '{path}' is denied: {e.Message}", e);
            }
            catch (IOException e)
            {
                throw QcowException.Io(QcowOperation.Create, path, $"Cannot create '{path}': {e.Message}", e);
            }
            var file = new FileHostFile(path, stream, true);
            try { file._lock = ImageLock.Acquire(stream, path, true); }
            catch { stream.Dispose(); throw; }
            return file;
        }

        public long Length => Interlocked.Read(ref _length);

        // Positional I/O without a lock on Linux (pread/pwrite), so that conversion threads read and
        // write at the same time; elsewhere FileStream under a lock.
        private static readonly bool s_positional = RuntimeInformation.IsOSPlatform(OSPlatform.Linux) &&
            (RuntimeInformation.ProcessArchitecture == Architecture.X64 || RuntimeInformation.ProcessArchitecture == Architecture.Arm64);

        [DllImport("libc", EntryPoint = "pread", SetLastError = true)]
        private static extern unsafe IntPtr PRead(int fd, byte* buffer, UIntPtr count, long offset);

        [DllImport("libc", EntryPoint = "pwrite", SetLastError = true)]
        private static extern unsafe IntPtr PWrite(int fd, byte* buffer, UIntPtr count, long offset);

        private const int EINTR = 4, ENOSPC = 28;

        private int Descriptor => (int)_stream.SafeFileHandle.DangerousGetHandle();

        private static string Describe(int errno) =>
            errno == ENOSPC ? "No space left on device" : errno == 5 ? "Input/output error" : $"errno {errno}";

        /// <summary>pread or pwrite until count bytes are done, the file ends (reads) or an error; retried on EINTR.</summary>
        private unsafe int TransferPositional(bool write, long offset, byte[] buffer, int index, int count)
        {
            int total = 0;
            fixed (byte* p = buffer)
            {
                while (total < count)
                {
                    byte* at = p + index + total;
                    var left = (UIntPtr)(count - total);
                    long n = (long)(write ? PWrite(Descriptor, at, left, offset + total) : PRead(Descriptor, at, left, offset + total));
                    if (n < 0)
                    {
                        int errno = Marshal.GetLastWin32Error();
                        if (errno == EINTR) continue;
                        throw QcowException.Io(write ? QcowOperation.Write : QcowOperation.Read, Path, $"{(write ? "Write" : "Read")} of {count} bytes at 0x{offset:X} in '{Path}' failed: {Describe(errno)}");
                    }
                    if (n == 0) break;  // end of file for a read; a write of at least one byte never returns 0
                    total += (int)n;
                }
            }
            return total;
        }

        private void WritePositional(long offset, byte[] buffer, int index, int count)
        {
            if (TransferPositional(true, offset, buffer, index, count) < count)
                throw QcowException.Io(QcowOperation.Write, Path, $"Write of {count} bytes at 0x{offset:X} in '{Path}' stopped short");
            GrowLength(offset + count);
        }

        /// <summary>Raises the known length to end, if that is further, without a lock (writers run in parallel).</summary>
        private void GrowLength(long end)
        {
            long current;
            while (end > (current = Interlocked.Read(ref _length)) && Interlocked.CompareExchange(ref _length, end, current) != current) { }
        }

        public int ReadAt(long offset, byte[] buffer, int index, int count)
        {
            if (offset < 0) throw new ArgumentOutOfRangeException(nameof(offset));
            if ((uint)index > (uint)buffer.Length || (uint)count > (uint)(buffer.Length - index)) throw new ArgumentOutOfRangeException(nameof(count));
            if (s_positional) return offset >= Length ? 0 : TransferPositional(false, offset, buffer, index, count);
            lock (_gate)
            {
                try
                {
                    if (offset >= _length) return 0;
                    _stream.Position = offset;
                    int total = 0;
                    while (total < count)
                    {
                        int n = _stream.Read(buffer, index + total, count - total);
                        if (n <= 0) break;
                        total += n;
                    }
                    return total;
                }
                catch (IOException e)
                {
                    throw QcowException.Io(QcowOperation.Read, Path, $"Read of {count} bytes at 0x{offset:X} in '{Path}' failed: {e.Message}", e);
                }
            }
        }

        public void WriteAt(long offset, byte[] buffer, int index, int count)
        {
            if (!CanWrite) throw new QcowException(QcowErrorKind.ReadOnly, Path, $"'{Path}' is open read-only");
            if ((uint)index > (uint)buffer.Length || (uint)count > (uint)(buffer.Length - index)) throw new ArgumentOutOfRangeException(nameof(count));
            if (s_positional)
            {
                WritePositional(offset, buffer, index, count);
                return;
            }
            lock (_gate)
            {
                try
                {
                    _stream.Position = offset;
                    _stream.Write(buffer, index, count);
                    if (offset + count > _length) _length = offset + count;
                }
                catch (IOException e)
                {
                    throw QcowException.Io(QcowOperation.Write, Path, $"Write of {count} bytes at 0x{offset:X} in '{Path}' failed: {e.Message}", e);
                }
            }
        }

        [DllImport("libc", EntryPoint = "copy_file_range", SetLastError = true)]
        private static extern IntPtr CopyFileRange(int inFd, ref long inOffset, int outFd, ref long outOffset, UIntPtr count, uint flags);

        /// <summary>One copy_file_range call: bytes copied, or -1 with errno set.</summary>
        internal delegate long CopyFileRangeCall(int inFd, long inOffset, int outFd, long outOffset, long count, out int errno);

        private static long CallCopyFileRange(int inFd, long inOffset, int outFd, long outOffset, long count, out int errno)
        {
            long n = (long)CopyFileRange(inFd, ref inOffset, outFd, ref outOffset, (UIntPtr)count, 0);
            errno = n < 0 ? Marshal.GetLastWin32Error() : 0;
            return n;
        }

        /// <summary>The system call CopyFrom makes; tests put one here that fails the way a kernel or file system would.</summary>
        internal CopyFileRangeCall KernelCopyCall { get; set; } = CallCopyFileRange;

        // The kernel refused to copy into this file once (another file system, no such call): it will again.
        private volatile bool _kernelCopyRefused = !s_positional;

        private const int EXDEV = 18, EINVAL = 22, ENOSYS = 38, EOPNOTSUPP = 95, EBADF = 9;

        /// <summary>At most this much per call, so that a cancelled conversion is not held for long.</summary>
        private const long KernelCopyStep = 64L << 20;

        public long CopyFrom(IHostFile source, long sourceOffset, long offset, long count)
        {
            if (!CanWrite) throw new QcowException(QcowErrorKind.ReadOnly, Path, $"'{Path}' is open read-only");
            if (!(source is FileHostFile from) || _kernelCopyRefused || count <= 0) return 0;
            long done = 0;
            try
            {
                while (done < count)
                {
                    long n = KernelCopyCall(from.Descriptor, sourceOffset + done, Descriptor, offset + done, Math.Min(KernelCopyStep, count - done), out int errno);
                    if (n < 0)
                    {
                        if (errno == EINTR) continue;
                        // Refusals, not failures: the caller writes the rest from its buffer.
                        if (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP || errno == ENOSYS || errno == EBADF)
                        {
                            _kernelCopyRefused = true;
                            break;
                        }
                        throw QcowException.Io(QcowOperation.Write, Path,
                            $"Copy of {count - done} bytes from '{from.Path}' at 0x{sourceOffset + done:X} to 0x{offset + done:X} in '{Path}' failed: {Describe(errno)}");
                    }
                    if (n == 0) break;  // the source ends here
                    done += n;
                }
            }
            catch (Exception e) when (e is EntryPointNotFoundException || e is DllNotFoundException)
            {
                _kernelCopyRefused = true;
            }
            if (done > 0) GrowLength(offset + done);
            return done;
        }

        public void SetLength(long length)
        {
            if (!CanWrite) throw new QcowException(QcowErrorKind.ReadOnly, Path, $"'{Path}' is open read-only");
            lock (_gate)
            {
                try
                {
                    _stream.SetLength(length);
                    _length = length;
                }
                catch (IOException e)
                {
                    throw QcowException.Io(QcowOperation.Write, Path, $"Cannot set the size of '{Path}' to {length}: {e.Message}", e);
                }
            }
        }

        public void Flush()
        {
            if (!CanWrite) return;
            lock (_gate)
            {
                try { _stream.Flush(true); }
                catch (IOException e)
                {
                    throw QcowException.Io(QcowOperation.Write, Path, $"Flush of '{Path}' failed: {e.Message}", e);
                }
            }
        }

        [DllImport("libc", EntryPoint = "lseek", SetLastError = true)]
        private static extern long LSeek(int fd, long offset, int whence);

        private const int SeekData = 3, SeekHole = 4;
        private bool _seekDataUnsupported = !RuntimeInformation.IsOSPlatform(OSPlatform.Linux);

        public bool TryFindData(long offset, out long dataStart, out long dataEnd)
        {
            dataStart = dataEnd = 0;
            if (_seekDataUnsupported) return false;
            lock (_gate)
            {
                try
                {
                    int fd = (int)_stream.SafeFileHandle.DangerousGetHandle();
                    if (offset >= _length)
                    {
                        dataStart = dataEnd = _length;
                        return true;
                    }
                    long start = LSeek(fd, offset, SeekData);
                    if (start < 0)
                    {
                        // ENXIO: no data at or after offset (the rest is a hole); anything else: unsupported.
                        if (Marshal.GetLastWin32Error() == 6) { dataStart = dataEnd = _length; return true; }
                        _seekDataUnsupported = true;
                        return false;
                    }
                    long end = LSeek(fd, start, SeekHole);
                    if (end < 0) { _seekDataUnsupported = true; return false; }
                    dataStart = Math.Min(start, _length);
                    dataEnd = Math.Min(end, _length);
                    return true;
                }
                catch (Exception e) when (e is EntryPointNotFoundException || e is DllNotFoundException)
                {
                    _seekDataUnsupported = true;
                    return false;
                }
            }
        }

        [DllImport("libc", EntryPoint = "fallocate", SetLastError = true)]
        private static extern int FAllocate(int fd, int mode, long offset, long length);

        /// <summary>fallocate modes: deallocate the range, leave the file size as it is.</summary>
        private const int FallocKeepSize = 0x01, FallocPunchHole = 0x02;
        private bool _punchHoleUnsupported = !RuntimeInformation.IsOSPlatform(OSPlatform.Linux);

        public bool TryPunchHole(long offset, long length)
        {
            if (_punchHoleUnsupported || length <= 0 || !CanWrite) return false;
            lock (_gate)
            {
                length = Math.Min(length, _length - offset);
                if (length <= 0) return false;
                try
                {
                    while (true)
                    {
                        if (FAllocate(Descriptor, FallocPunchHole | FallocKeepSize, offset, length) == 0) return true;
                        int errno = Marshal.GetLastWin32Error();
                        if (errno == EINTR) continue;
                        // EOPNOTSUPP (tmpfs of old kernels, FAT, ...), ENOSYS: the file system cannot; anything
                        // else (EIO) is a real failure of this file.
                        if (errno == EOPNOTSUPP || errno == ENOSYS) { _punchHoleUnsupported = true; return false; }
                        throw QcowException.Io(QcowOperation.Write, Path, $"Deallocating {length} bytes at offset {offset} of '{Path}' failed: {Describe(errno)}");
                    }
                }
                catch (Exception e) when (e is EntryPointNotFoundException || e is DllNotFoundException)
                {
                    _punchHoleUnsupported = true;
                    return false;
                }
            }
        }

        public void Dispose()
        {
            lock (_gate)
            {
                _lock?.Dispose();
                _lock = null;
                _stream.Dispose();
            }
        }
    }

}
