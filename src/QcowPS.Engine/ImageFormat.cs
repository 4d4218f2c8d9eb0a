using System;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine
{
    public enum ImageFormat
    {
        Auto,
        Qcow2,
        Qed,
        Raw,
        /// <summary>A disk behind an NBD server, named by an NBD URI (not a file format: never a conversion's output file).</summary>
        Nbd,
    }
}
