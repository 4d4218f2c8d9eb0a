using System;

namespace QcowPS.Engine.Qcow2
{
    [Flags]
    public enum Qcow2IncompatibleFeatures : ulong
    {
        None = 0,
        Dirty = 1,
        Corrupt = 2,
        ExternalDataFile = 4,
        CompressionType = 8,
        ExtendedL2 = 16,
    }
}
