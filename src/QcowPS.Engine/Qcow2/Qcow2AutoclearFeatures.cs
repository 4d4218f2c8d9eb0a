using System;

namespace QcowPS.Engine.Qcow2
{
    [Flags]
    public enum Qcow2AutoclearFeatures : ulong
    {
        None = 0,
        Bitmaps = 1,
        RawExternalData = 2,
    }
}
