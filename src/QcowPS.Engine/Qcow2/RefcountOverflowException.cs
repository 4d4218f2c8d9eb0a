using System;
using System.Collections.Generic;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    /// <summary>A refcount would pass its width's maximum (callers that can copy the cluster instead check first).</summary>
    internal sealed class RefcountOverflowException : QcowException
    {
        public long ClusterIndex { get; }
        public RefcountOverflowException(long clusterIndex)
            : base(QcowErrorKind.Unsupported, $"The refcount of host cluster {clusterIndex} would exceed its maximum; the image's refcount width is too narrow for this")
        {
            ClusterIndex = clusterIndex;
        }
    }
}
