using System;
using System.IO;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    public enum Preallocation
    {
        Off,
        /// <summary>L2 tables and data clusters allocated; the file is extended, sparse.</summary>
        Metadata,
        /// <summary>As Metadata, and the data clusters written with zeros.</summary>
        Full,
    }
}
