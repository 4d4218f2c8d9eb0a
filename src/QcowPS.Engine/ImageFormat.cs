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
    }
}
