using System;
using System.Collections.Generic;
using static System.Buffers.Binary.BinaryPrimitives;

namespace QcowPS.Engine.Guest.FileSystems
{
    /// <summary>A run of bytes, relative to the start of a file system, that it marks free.</summary>
    public struct FreeRun
    {
        public long Offset;
        public long Length;
        public FreeRun(long offset, long length) { Offset = offset; Length = length; }
    }
}
