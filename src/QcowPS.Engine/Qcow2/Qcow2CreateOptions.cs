using System;
using System.IO;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    /// <summary>What New-QcowImage asks for (qemu-img create -f qcow2 -o ...).</summary>
    public sealed class Qcow2CreateOptions
    {
        /// <summary>Virtual size in bytes; null takes the backing file's size.</summary>
        public long? Size { get; set; }
        public int ClusterSize { get; set; } = 65536;
        public int Version { get; set; } = 3;
        public int RefcountBits { get; set; } = 16;
        public bool LazyRefcounts { get; set; }
        public bool ExtendedL2 { get; set; }
        public Qcow2CompressionType CompressionType { get; set; } = Qcow2CompressionType.Zlib;
        /// <summary>The backing file name as it will be stored (relative names are relative to the new image).</summary>
        public string BackingFile { get; set; }
        /// <summary>qcow2, qed or raw; null probes the backing file (qcow2/QED only, never raw).</summary>
        public string BackingFormat { get; set; }
        public Preallocation Preallocation { get; set; } = Preallocation.Off;
        /// <summary>Replace an existing file (the new image is built under a temporary name first).</summary>
        public bool Overwrite { get; set; }
    }
}
