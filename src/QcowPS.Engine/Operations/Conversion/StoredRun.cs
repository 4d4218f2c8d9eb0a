using QcowPS.Engine.IO;

namespace QcowPS.Engine.Operations.Conversion
{
    /// <summary>Bytes of a chunk that a source file holds as they are, in order: the kernel may copy them from there.</summary>
    internal struct StoredRun
    {
        public int At;
        public int Length;
        public IHostFile File;
        public long HostOffset;
    }
}
