using QcowPS.Engine.IO;

namespace QcowPS.Engine
{
    /// <summary>How DiskImage.Open opens an image and its backing chain.</summary>
    public sealed class OpenOptions
    {
        /// <summary>Auto probes the magic; a file with no known magic opens only with Raw given.</summary>
        public ImageFormat Format { get; set; } = ImageFormat.Auto;

        /// <summary>
        /// Read a top image with no known magic as raw (a file the user named, as qemu-img does); never
        /// applies to backing files, which open as raw only when the image records that format.
        /// </summary>
        public bool UnrecognisedAsRaw { get; set; }

        /// <summary>Open the top image for writing (backing files are always read-only).</summary>
        public bool Writable { get; set; }

        public LockMode Lock { get; set; } = LockMode.Default;

        /// <summary>Open the backing chain (false: only this layer, as qemu-img info does for its own fields).</summary>
        public bool OpenBackingChain { get; set; } = true;

        /// <summary>Longest backing chain accepted, so a hostile chain cannot exhaust file handles.</summary>
        public int MaxBackingDepth { get; set; } = 64;

        /// <summary>For writable opens of dirty images with lazy refcounts: rebuild refcounts (as QEMU does).</summary>
        public bool RepairDirty { get; set; } = true;

        /// <summary>Open an image with the corrupt bit for writing (only Repair-QcowImage does).</summary>
        public bool AllowCorrupt { get; set; }

        /// <summary>L2 cache size in bytes (QEMU's default maximum is 32 MiB).</summary>
        public long L2CacheBytes { get; set; } = 32L * 1024 * 1024;

        /// <summary>A wrapper around every host file opened (tests inject faults here).</summary>
        public System.Func<IHostFile, IHostFile> WrapHostFile { get; set; }

        /// <summary>How an NBD URI is connected to (timeout, extra metadata contexts); null: the defaults.</summary>
        public Nbd.NbdClientOptions Nbd { get; set; }

        internal OpenOptions ForBacking() => new OpenOptions
        {
            Format = ImageFormat.Auto,
            Writable = false,
            Lock = Lock,
            OpenBackingChain = true,
            MaxBackingDepth = MaxBackingDepth,
            RepairDirty = false,
            L2CacheBytes = L2CacheBytes,
            WrapHostFile = null,
        };
    }
}
