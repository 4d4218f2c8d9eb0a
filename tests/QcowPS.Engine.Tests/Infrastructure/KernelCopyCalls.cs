using System;
using System.Threading;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Tests.Infrastructure
{
    /// <summary>
    /// Counts the copy_file_range calls a new file makes, passing each on to the real call or to one a
    /// test puts in its place (to refuse part-way, fill the disk, or forbid the call); and the errno
    /// values those tests inject.
    /// </summary>
    internal sealed class KernelCopyCalls
    {
        public const int EXDEV = 18, ENOSPC = 28, EOPNOTSUPP = 95;

        public int Count;

        /// <summary>A WrapDestination-style hook; replace gets the file's real call and returns the one to use.</summary>
        public Func<IHostFile, IHostFile> Wrap(Func<FileHostFile.CopyFileRangeCall, FileHostFile.CopyFileRangeCall> replace = null) => f =>
        {
            var file = (FileHostFile)f;
            var call = replace != null ? replace(file.KernelCopyCall) : file.KernelCopyCall;
            file.KernelCopyCall = (int inFd, long inOffset, int outFd, long outOffset, long count, out int errno) =>
            {
                Interlocked.Increment(ref Count);
                return call(inFd, inOffset, outFd, outOffset, count, out errno);
            };
            return file;
        };

        /// <summary>The call for runs with the kernel copy off: reaching it fails the test.</summary>
        public static long MustNotRun(int inFd, long inOffset, int outFd, long outOffset, long count, out int errno) =>
            throw new InvalidOperationException("copy_file_range called with the kernel copy off");
    }
}
