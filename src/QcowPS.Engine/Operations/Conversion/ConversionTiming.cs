using System.Diagnostics;
using System.Threading;

namespace QcowPS.Engine.Operations.Conversion
{
    /// <summary>
    /// Where one conversion's time went, for profiling (bench/EngineTiming): Stopwatch ticks spent
    /// reading, processing (summed over workers) and writing. One per run, so that conversions
    /// running at the same time do not add into each other's figures.
    /// </summary>
    internal sealed class ConversionTiming
    {
        private long _readTicks, _workTicks, _writeTicks;

        public void AddRead(long startTimestamp) => Interlocked.Add(ref _readTicks, Stopwatch.GetTimestamp() - startTimestamp);
        public void AddWork(long startTimestamp) => Interlocked.Add(ref _workTicks, Stopwatch.GetTimestamp() - startTimestamp);
        public void AddWrite(long startTimestamp) => Interlocked.Add(ref _writeTicks, Stopwatch.GetTimestamp() - startTimestamp);

        public double ReadSeconds => Interlocked.Read(ref _readTicks) / (double)Stopwatch.Frequency;
        public double WorkSeconds => Interlocked.Read(ref _workTicks) / (double)Stopwatch.Frequency;
        public double WriteSeconds => Interlocked.Read(ref _writeTicks) / (double)Stopwatch.Frequency;

        public override string ToString() => $"read {ReadSeconds:F2} s, work {WorkSeconds:F2} s, write {WriteSeconds:F2} s";
    }
}
