using System;
using System.Collections.Generic;
using System.IO;
using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.IO;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>Base of the cmdlets that only read images: they can read an image in use with -ForceShare.</summary>
    public abstract class ReadImageCmdlet : ImageCmdlet
    {
        /// <summary>
        /// Read without QEMU's shared lock, like qemu-img -U: works on an image a running VM (or a
        /// writer) holds, but what is read may be changing underneath.
        /// </summary>
        [Parameter]
        public SwitchParameter ForceShare { get; set; }

        protected override LockMode ReadLock => ForceShare ? LockMode.None : LockMode.Default;
    }
}
