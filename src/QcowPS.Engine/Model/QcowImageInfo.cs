using QcowPS.Engine;
using QcowPS.Engine.Qcow2;

namespace QcowPS
{
    /// <summary>What Get-QcowInfo, New-QcowImage and Resize-QcowImage emit: one image (one layer of a chain).</summary>
    public sealed class QcowImageInfo
    {
        public string Path { get; set; }
        /// <summary>The file name (for sorting and display).</summary>
        public string Name => System.IO.Path.GetFileName(Path);
        public ImageFormat Format { get; set; }
        /// <summary>qcow2 version (2 or 3); null for other formats.</summary>
        public int? Version { get; set; }
        /// <summary>qemu-img's name for the version: "0.10" (v2) or "1.1" (v3).</summary>
        public string Compat { get; set; }
        public long VirtualSize { get; set; }
        public long FileSize { get; set; }
        /// <summary>Bytes allocated on the host file system (qemu-img's actual-size).</summary>
        public long ActualSize { get; set; }
        public int? ClusterSize { get; set; }
        /// <summary>The backing file name as the image records it.</summary>
        public string BackingFile { get; set; }
        /// <summary>The backing file name resolved against this image's folder.</summary>
        public string FullBackingFile { get; set; }
        public string BackingFormat { get; set; }
        public string DataFile { get; set; }
        public bool? DataFileRaw { get; set; }
        public Qcow2CompressionType? CompressionType { get; set; }
        public int? RefcountBits { get; set; }
        public bool? LazyRefcounts { get; set; }
        public bool? ExtendedL2 { get; set; }
        public bool Encrypted { get; set; }
        /// <summary>"aes" or "luks" when encrypted.</summary>
        public string EncryptionFormat { get; set; }
        public bool Dirty { get; set; }
        public bool Corrupt { get; set; }
        public int SnapshotCount { get; set; }
        public long? L1Size { get; set; }
        public long? L1TableOffset { get; set; }
        public long? RefcountTableOffset { get; set; }
        public long? RefcountTableClusters { get; set; }
        public long? SnapshotsOffset { get; set; }
        public int? HeaderLength { get; set; }
        public Qcow2IncompatibleFeatures? IncompatibleFeatures { get; set; }
        public Qcow2CompatibleFeatures? CompatibleFeatures { get; set; }
        public Qcow2AutoclearFeatures? AutoclearFeatures { get; set; }
        /// <summary>Names of the header extensions present, in file order.</summary>
        public TextList HeaderExtensions { get; set; } = new TextList();
        /// <summary>Number of bitmaps the bitmaps extension lists (kept, not interpreted).</summary>
        public int BitmapCount { get; set; }
        /// <summary>How many backing images lie below this one (0: none); null when the chain could not be followed.</summary>
        public int? BackingChainDepth { get; set; }

        /// <summary>NBD: the export is read-only (the server's READ_ONLY flag); null for files.</summary>
        public bool? ReadOnly { get; set; }
        /// <summary>NBD: the export name the server confirmed.</summary>
        public string ExportName { get; set; }
        /// <summary>NBD: the export's description, when the server gives one.</summary>
        public string Description { get; set; }
        /// <summary>NBD: the transmission flags set (SEND_FLUSH, SEND_TRIM, CAN_MULTI_CONN, ...).</summary>
        public TextList NbdFlags { get; set; }
        /// <summary>NBD: the server's block size constraints (minimum, preferred, maximum payload).</summary>
        public long? BlockSizeMinimum { get; set; }
        public long? BlockSizePreferred { get; set; }
        public long? BlockSizeMaximum { get; set; }
        /// <summary>NBD: the metadata contexts the server agreed to (base:allocation, qemu:allocation-depth, ...).</summary>
        public TextList MetaContexts { get; set; }
        /// <summary>NBD: whether the connection is TLS-encrypted.</summary>
        public bool? Tls { get; set; }

        public override string ToString() => Path;
    }
}
