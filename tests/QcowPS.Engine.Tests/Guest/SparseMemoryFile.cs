using System;
using System.Collections.Generic;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Tests.Guest
{
    /// <summary>
    /// A host file of any length up to 2^63 − 1 bytes held as a dictionary of 4 KiB pages: sizes no
    /// host file system (nor qcow2) reaches, such as 2^63 − 513 bytes. Records which pages were written.
    /// </summary>
    internal sealed class SparseMemoryFile : IHostFile
    {
        private const int PageSize = 4096;
        private readonly Dictionary<long, byte[]> _pages = new Dictionary<long, byte[]>();

        public SparseMemoryFile(long length) => Length = length;

        public string Path => $"memory:{Length}";
        public bool CanWrite => true;
        public long Length { get; private set; }
        public IReadOnlyCollection<long> WrittenPages => _pages.Keys;

        public int ReadAt(long offset, byte[] buffer, int index, int count)
        {
            int n = (int)Math.Max(0, Math.Min(count, Length - offset));
            for (int done = 0; done < n;)
            {
                long page = (offset + done) / PageSize;
                int within = (int)((offset + done) % PageSize);
                int chunk = Math.Min(n - done, PageSize - within);
                if (_pages.TryGetValue(page, out var p)) Array.Copy(p, within, buffer, index + done, chunk);
                else Array.Clear(buffer, index + done, chunk);
                done += chunk;
            }
            return n;
        }

        public void WriteAt(long offset, byte[] buffer, int index, int count)
        {
            if (offset > Length - count) throw new InvalidOperationException($"write at {offset} of {count} bytes past the end of {Length}");
            for (int done = 0; done < count;)
            {
                long page = (offset + done) / PageSize;
                int within = (int)((offset + done) % PageSize);
                int chunk = Math.Min(count - done, PageSize - within);
                if (!_pages.TryGetValue(page, out var p)) _pages[page] = p = new byte[PageSize];
                Array.Copy(buffer, index + done, p, within, chunk);
                done += chunk;
            }
        }

        public void SetLength(long length) => Length = length;
        public long CopyFrom(IHostFile source, long sourceOffset, long offset, long count) => 0;
        public void Flush() { }

        public bool TryFindData(long offset, out long dataStart, out long dataEnd)
        {
            dataStart = dataEnd = 0;
            return false;
        }

        public bool TryPunchHole(long offset, long length) => false;

        public void Dispose() { }
    }
}
