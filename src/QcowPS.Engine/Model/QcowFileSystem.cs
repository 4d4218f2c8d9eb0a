namespace QcowPS
{
    /// <summary>A file system inside a guest disk, from Get-QcowFileSystem (virt-df / virt-filesystems --long as an object).</summary>
    public sealed class QcowFileSystem
    {
        public string Path { get; set; }
        /// <summary>The partition number, or 0 for a file system on the whole disk.</summary>
        public int Partition { get; set; }
        /// <summary>blkid's TYPE (ext4, xfs, vfat, ntfs, swap, LVM2_member, crypto_LUKS, ...).</summary>
        public string Type { get; set; }
        public string Label { get; set; }
        public string Uuid { get; set; }
        /// <summary>Where the file system starts in the guest disk.</summary>
        public long Offset { get; set; }
        /// <summary>Size, Used and Available from the file system's own counters; null when not read.</summary>
        public long? Size { get; set; }
        public long? Used { get; set; }
        public long? Available { get; set; }
        public double? UsePercent { get; set; }
        public int? BlockSize { get; set; }
        /// <summary>Whether Optimize-QcowImage can give its free space back; if not, NotOptimizableReason says why.</summary>
        public bool Optimizable { get; set; }
        public string NotOptimizableReason { get; set; }

        public override string ToString() => $"{Type} #{Partition} {Label}";
    }
}
