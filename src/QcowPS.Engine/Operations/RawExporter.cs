using System;
using System.IO;
using QcowPS.Engine.IO;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine.Operations
{
    /// <summary>
    /// Writes a range of guest data to a new sparse raw file (Read-QcowBlock -OutFile): runs that read as
    /// zeros anywhere in the chain become holes, not written zeros. The file follows NewFile's rule: built
    /// under a temporary name, renamed when complete, nothing left behind on failure.
    /// </summary>
    public static class RawExporter
    {
        public static void Export(VirtualDisk disk, long offset, long length, string target, bool overwrite, Action<long, long> progress = null)
        {
            target = Path.GetFullPath(target);
            NewFile.CheckCanCreate(target, overwrite);
            // A few clusters at a time: bounded memory whatever the disk size.
            int chunk = Math.Max(256 << 10, 4 * ImageInspector.PieceSize(disk));
            var buffer = new byte[(int)Math.Min(chunk, Math.Max(length, 1))];
            string temp = NewFile.TemporaryPathFor(target);
            try
            {
                try
                {
                    using (var output = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.Read))
                    {
                        for (long done = 0; done < length;)
                        {
                            int n = (int)Math.Min(buffer.Length, length - done);
                            long data = DataRunLength(disk, offset + done, n);
                            if (data == 0)
                            {
                                n = (int)disk.GetChainExtent(offset + done, n).Length;
                            }
                            else
                            {
                                n = (int)data;
                                disk.Read(offset + done, buffer, 0, n);
                                output.Position = done;
                                output.Write(buffer, 0, n);
                            }
                            done += n;
                            progress?.Invoke(done, length);
                        }
                        output.SetLength(length);
                        output.Flush();  // no fsync, as Convert-QcowImage without -Sync and qemu-img convert
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

        /// <summary>How many bytes from offset (at most max) are stored data; 0 when the run there reads as zeros.</summary>
        private static long DataRunLength(VirtualDisk disk, long offset, int max)
        {
            long run = 0;
            while (run < max)
            {
                var next = disk.GetChainExtent(offset + run, max - run);
                if (next.Type != ClusterType.Normal && next.Type != ClusterType.Compressed) break;
                run += next.Length;
            }
            return Math.Min(run, max);
        }
    }
}
