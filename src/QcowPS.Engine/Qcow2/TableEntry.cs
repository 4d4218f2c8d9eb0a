using System;
using System.Collections.Generic;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    /// <summary>One raw table entry and where it is stored.</summary>
    public struct TableEntry
    {
        public long Index;
        public long ParentIndex;
        public long StoredAt;
        public ulong Value;
        public ulong Bitmap;
    }
}
