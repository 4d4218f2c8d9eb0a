using System;
using System.Collections.Generic;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine.Operations.Conversion
{
    /// <summary>
    /// One stretch of the source on its way through the pipeline: read (or skipped) by a reader,
    /// classified and compressed by a worker, written in sequence order by the writer, and for
    /// qcow2 data, copied into the file by a worker again once the writer has mapped it.
    /// </summary>
    internal sealed class ConversionChunk
    {
        public long Sequence;
        public long Offset;
        public int Length;
        public long Skipped;              // a run that holds nothing in the whole chain: no buffer, nothing to write
        public byte[] Data;
        public bool[] KnownZero;          // per destination cluster: no layer stores anything there
        public DestinationClusterKind[] Kinds;
        public byte[][] Streams;          // compressed output per cluster
        public int[] StreamLengths;
        public List<PendingCluster> Inflate = new List<PendingCluster>();
        public List<Qcow2Image.HostWrite> DataWrites;   // qcow2 data runs the writer mapped, for a worker to write
        public List<StoredRun> Stored;                  // where the chunk's bytes lie as they are in a source file (kernel copy only)
        public bool Mapped;                             // in the queue again, for its data writes
    }
}
