using System;
using System.Threading;
using QcowPS.Engine.IO;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine.Operations
{
    /// <summary>What Convert-QcowImage asks for (qemu-img convert -O ... [-c] [-B]).</summary>
    public sealed class ConvertOptions
    {
        public ImageFormat DestinationFormat { get; set; } = ImageFormat.Qcow2;
        public bool Compress { get; set; }
        public Qcow2CompressionType CompressionType { get; set; } = Qcow2CompressionType.Zlib;
        /// <summary>Compression level (zlib 1-9, zstd 1-19); 0: QEMU's default for the type (zlib 6, zstd 3).</summary>
        public int CompressionLevel { get; set; }
        public int ClusterSize { get; set; } = 65536;
        public int Version { get; set; } = 3;
        public int RefcountBits { get; set; } = 16;
        /// <summary>Backing file of the destination, as stored; only what differs from it is written.</summary>
        public string BackingFile { get; set; }
        public string BackingFormat { get; set; }
        /// <summary>Worker threads for compression and decompression.</summary>
        public int Threads { get; set; } = Environment.ProcessorCount;
        public bool Overwrite { get; set; }
        /// <summary>
        /// fsync the destination before it is renamed into place. Off by default, like qemu-img
        /// convert (whose default cache mode for the destination is "unsafe": no flush at all).
        /// </summary>
        public bool Sync { get; set; }
        public CancellationToken Cancellation { get; set; }
        /// <summary>Called on the calling thread with (bytes done, total bytes).</summary>
        public Action<long, long> Progress { get; set; }
        /// <summary>
        /// Whether runs stored as they are in a source file go to the destination by copy_file_range
        /// (default: QCOWPS_KERNEL_COPY, else Auto: only where the destination's file system shares extents).
        /// </summary>
        public KernelCopyMode KernelCopyMode { get; set; } = KernelCopy.DefaultMode();
        /// <summary>Wraps the destination's host file (tests simulate a full disk here).</summary>
        public Func<IHostFile, IHostFile> WrapDestination { get; set; }
        /// <summary>
        /// Incremental backup: only the ranges this persistent bitmap of the source (a qcow2 image, or an NBD
        /// export offering qemu:dirty-bitmap:NAME) marks dirty are copied; the rest is left unallocated so the backing file (the previous backup)
        /// shows through. Needs BackingFile.
        /// </summary>
        public string Bitmap { get; set; }
        /// <summary>Copy the source's persistent bitmaps to the qcow2 destination (qemu-img convert --bitmaps).</summary>
        public bool CopyBitmaps { get; set; }
    }
}
