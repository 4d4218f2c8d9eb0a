using System;
using System.Collections.Generic;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    public enum Qcow2RepairMode
    {
        None,
        /// <summary>Fix refcounts that are too high (qemu-img check -r leaks).</summary>
        Leaks,
        /// <summary>Fix leaks and corruptions: refcounts too low, COPIED flags, broken refcount structures (-r all).</summary>
        All,
    }
}
