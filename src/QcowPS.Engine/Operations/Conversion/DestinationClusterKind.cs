namespace QcowPS.Engine.Operations.Conversion
{
    /// <summary>What the writer does with one destination cluster of a chunk.</summary>
    internal enum DestinationClusterKind : byte
    {
        /// <summary>Nothing to write: all zeros over nothing, or the same as the destination's backing file.</summary>
        Skip,
        Data,
        Compressed,
        /// <summary>Zeros over backing data: the qcow2 v3 zero flag.</summary>
        Zero,
    }
}
