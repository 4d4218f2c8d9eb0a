namespace QcowPS.Engine.Operations.Conversion
{
    /// <summary>Totals of one conversion, updated by several threads (Interlocked where they share).</summary>
    internal sealed class ConversionCounters
    {
        public long Data, Zero, Compressed, BytesIn, BytesOut;
    }
}
