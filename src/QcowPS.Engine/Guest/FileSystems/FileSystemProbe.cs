using System;

namespace QcowPS.Engine.Guest.FileSystems
{
    /// <summary>Finds the file system on a volume: each kind recognises its own signature.</summary>
    public static class FileSystemProbe
    {
        private static readonly Func<VirtualDisk, long, long, GuestFileSystem>[] Probes =
        {
            ExtFileSystem.TryOpen,
            XfsFileSystem.TryOpen,
            NtfsFileSystem.TryOpen,
            SignatureFileSystem.TryOpen,
            FatFileSystem.TryOpen,
        };

        /// <summary>The file system on the volume at offset (length bytes), or null when none is recognised.</summary>
        public static GuestFileSystem Probe(VirtualDisk disk, long offset, long length)
        {
            foreach (var probe in Probes)
            {
                var fs = probe(disk, offset, length);
                if (fs != null) return fs;
            }
            return null;
        }
    }
}
