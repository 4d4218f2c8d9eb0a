using System;

namespace QcowPS.Engine.IO
{
    /// <summary>
    /// Positional access to one host file: the only layer that touches the file system.
    /// Implementations are safe for concurrent ReadAt calls (conversion reads on several threads).
    /// </summary>
    public interface IHostFile : IDisposable
    {
        string Path { get; }
        bool CanWrite { get; }
        long Length { get; }

        /// <summary>Reads up to count bytes; returns fewer only at the end of the file.</summary>
        int ReadAt(long offset, byte[] buffer, int index, int count);

        void WriteAt(long offset, byte[] buffer, int index, int count);

        void SetLength(long length);

        /// <summary>
        /// Copies count bytes at sourceOffset of source to offset of this file inside the kernel
        /// (copy_file_range; on XFS or btrfs the extents are shared, not copied). Returns how many bytes
        /// it copied: fewer than count, even 0, when the kernel cannot copy between these files (another
        /// file system, an old kernel, not Linux) or the source ends; the caller writes the rest itself.
        /// Real failures (a full disk, an I/O error) throw, as WriteAt does.
        /// </summary>
        long CopyFrom(IHostFile source, long sourceOffset, long offset, long count);

        /// <summary>Makes everything written so far durable (fsync), the ordering point of crash safety.</summary>
        void Flush();

        /// <summary>
        /// Where the next data run starts at or after offset and where it ends (SEEK_DATA/SEEK_HOLE),
        /// so holes read as known zeros without reading them. False when the file system cannot tell.
        /// </summary>
        bool TryFindData(long offset, out long dataStart, out long dataEnd);

        /// <summary>
        /// Deallocates a range so it reads as zeros (fallocate PUNCH_HOLE, keeping the size; the kernel
        /// zeroes partial blocks at its ends). False, the file untouched, when the file system cannot.
        /// </summary>
        bool TryPunchHole(long offset, long length);
    }

}
