using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Threading;

namespace QcowPS.Engine.IO
{
    public enum LockMode
    {
        /// <summary>Shared lock for readers, exclusive write lock for writers (as QEMU does).</summary>
        Default,
        /// <summary>No locking (like qemu-img -U, "force share"): for reading images in use.</summary>
        None,
    }
}
