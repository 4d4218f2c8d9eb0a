using System;
using System.Collections.Generic;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Qcow2
{
    /// <summary>One guest cluster's L2 entry, decoded.</summary>
    public struct ClusterDescriptor
    {
        public long GuestOffset;
        public long L1Index;
        public int L2Index;
        /// <summary>False when the L1 entry is empty (no L2 table): there is no L2 entry to show.</summary>
        public bool HasL2Entry;
        public ulong Raw;
        public ulong Bitmap;
        public ClusterType Type;
        /// <summary>Host cluster (standard) or compressed stream offset; -1 when none.</summary>
        public long HostOffset;
        public int CompressedSize;
        public int CompressedSectors;
        public bool Copied;
    }
}
