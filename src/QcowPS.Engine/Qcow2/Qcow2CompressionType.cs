namespace QcowPS.Engine.Qcow2
{
    public enum Qcow2CompressionType : byte
    {
        Zlib = 0,
        Zstd = 1,
    }
}
