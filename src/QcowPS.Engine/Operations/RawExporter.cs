using System;
using System.IO;
using QcowPS.Engine.IO;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine.Operations
{
    /// <summary>
    /// Writes a range of guest data to a new sparse raw file (Read-QcowBlock -OutFile): runs that read as
    /// zeros anywhere in the chain become holes, not written zeros. Runs a host file holds as they are
    /// (ChainExtent.StoredFile) are copied by the kernel where KernelCopy.UseFor says so, as in
    /// Convert-QcowImage. The file follows NewFile's rule: built under a temporary name, renamed when
    /// complete, nothing left behind on failure.
    /// </summary>
    public static class RawExporter
    {
        /// <summary>How much of a stored run is asked for at once: large, so that the kernel copies in long runs.</summary>
        private const long KernelCopyRun = 1L << 30;

        /// <param name="kernelCopyMode">Whether stored runs go by copy_file_range; null: QCOWPS_KERNEL_COPY, else Auto.</param>
        public static void Export(VirtualDisk disk, long offset, long length, string target, bool overwrite, Action<long, long> progress = null,
            KernelCopyMode? kernelCopyMode = null) =>
            Export(disk, offset, length, target, overwrite, progress, kernelCopyMode ?? KernelCopy.DefaultMode(), null);

        /// <param name="wrapDestination">Wraps the new file's host file (tests make its kernel copy fail here).</param>
        internal static void Export(VirtualDisk disk, long offset, long length, string target, bool overwrite, Action<long, long> progress,
            KernelCopyMode kernelCopyMode, Func<IHostFile, IHostFile> wrapDestination)
        {
            target = Path.GetFullPath(target);
            NewFile.CheckCanCreate(target, overwrite);
            bool kernelCopy = KernelCopy.UseFor(kernelCopyMode, target);
            // A few clusters at a time: bounded memory whatever the disk size.
            int chunk = Math.Max(256 << 10, 4 * ImageInspector.PieceSize(disk));
            var buffer = new byte[(int)Math.Min(chunk, Math.Max(length, 1))];
            string temp = NewFile.TemporaryPathFor(target);
            try
            {
                try
                {
                    IHostFile output = FileHostFile.Create(temp, false);
                    if (wrapDestination != null) output = wrapDestination(output);
                    using (output)
                    {
                        for (long done = 0; done < length;)
                        {
                            if (kernelCopy)
                            {
                                var e = disk.GetChainExtent(offset + done, Math.Min(length - done, KernelCopyRun));
                                var stored = e.StoredFile;
                                if (stored != null)
                                {
                                    long copied = output.CopyFrom(stored, e.HostOffset, done, e.Length);
                                    // Refused (another file system, no such call): the rest from the buffer.
                                    if (copied < e.Length) WriteData(disk, offset, output, buffer, done + copied, e.Length - copied);
                                    done += e.Length;
                                    progress?.Invoke(done, length);
                                    continue;
                                }
                            }
                            int n = (int)Math.Min(buffer.Length, length - done);
                            long data = DataRunLength(disk, offset + done, n, kernelCopy);
                            if (data == 0)
                            {
                                n = (int)disk.GetChainExtent(offset + done, n).Length;
                            }
                            else
                            {
                                n = (int)data;
                                WriteData(disk, offset, output, buffer, done, n);
                            }
                            done += n;
                            progress?.Invoke(done, length);
                        }
                        // No fsync, as Convert-QcowImage without -Sync and qemu-img convert.
                        output.SetLength(length);
                    }
                }
                catch (IOException e)
                {
                    throw QcowException.Io(QcowOperation.Write, target, $"Writing '{target}' failed: {e.Message}", e);
                }
                NewFile.MoveIntoPlace(temp, target, overwrite);
            }
            catch
            {
                NewFile.Discard(temp);
                throw;
            }
        }

        /// <summary>Reads count guest bytes at offset + at through the buffer and writes them at at of output.</summary>
        private static void WriteData(VirtualDisk disk, long offset, IHostFile output, byte[] buffer, long at, long count)
        {
            for (long end = at + count; at < end;)
            {
                int n = (int)Math.Min(buffer.Length, end - at);
                disk.Read(offset + at, buffer, 0, n);
                output.WriteAt(at, buffer, 0, n);
                at += n;
            }
        }

        /// <summary>
        /// How many bytes from offset (at most max) are stored data; 0 when the run there reads as zeros.
        /// With the kernel copy on, the run stops where a run the kernel can copy starts.
        /// </summary>
        private static long DataRunLength(VirtualDisk disk, long offset, int max, bool kernelCopy)
        {
            long run = 0;
            while (run < max)
            {
                var next = disk.GetChainExtent(offset + run, max - run);
                if (next.Type != ClusterType.Normal && next.Type != ClusterType.Compressed) break;
                if (kernelCopy && next.StoredFile != null) break;
                run += next.Length;
            }
            return Math.Min(run, max);
        }
    }
}
