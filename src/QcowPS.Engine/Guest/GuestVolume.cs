namespace QcowPS.Engine.Guest
{
    /// <summary>A stretch of the guest disk that may hold a file system: a partition, or the whole disk (Number 0).</summary>
    public sealed class GuestVolume
    {
        public int Number { get; set; }
        public long Offset { get; set; }
        public long Length { get; set; }
        public FileSystems.GuestFileSystem FileSystem { get; set; }
    }
}
