using System;

namespace QcowPS.Engine.IO
{
    public static class HostFileExtensions
    {
        /// <summary>Reads exactly count bytes, failing with a corruption error naming what was being read.</summary>
        public static void ReadExactly(this IHostFile file, long offset, byte[] buffer, int index, int count, string what)
        {
            int got = file.ReadAt(offset, buffer, index, count);
            if (got != count)
                throw QcowException.Corrupt(file.Path,
                    $"{what} at offset 0x{offset:X} (length {count}) runs past the end of the file (file size {file.Length})");
        }

        /// <summary>Reads what the file has and fills the rest of the range with zeros.</summary>
        public static void ReadOrZero(this IHostFile file, long offset, byte[] buffer, int index, int count)
        {
            int got = offset < file.Length ? file.ReadAt(offset, buffer, index, count) : 0;
            if (got < count) Array.Clear(buffer, index + got, count - got);
        }
    }
}
