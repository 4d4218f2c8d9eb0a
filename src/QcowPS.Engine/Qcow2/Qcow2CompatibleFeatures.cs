using System;

namespace QcowPS.Engine.Qcow2
{
    [Flags]
    public enum Qcow2CompatibleFeatures : ulong
    {
        None = 0,
        LazyRefcounts = 1,
    }
}
