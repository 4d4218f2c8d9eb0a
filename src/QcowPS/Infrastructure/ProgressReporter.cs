using System.Diagnostics;
using System.Management.Automation;

namespace QcowPS.Infrastructure
{
    /// <summary>
    /// Write-Progress for long work. Nothing for the first half second, then at most four records a
    /// second (one per changed percent), and the completion record only when a bar was shown.
    /// Why: each record is drawn by the host on the pipeline thread, which is also the thread that
    /// writes a conversion in order, so every drawing holds the writer up (a record per percent was up
    /// to 100 drawings for a conversion of a fraction of a second); and a bar that flashes for a quick
    /// operation tells the user nothing.
    /// </summary>
    internal sealed class ProgressReporter
    {
        private static readonly long FirstAfter = Stopwatch.Frequency / 2;
        private static readonly long Interval = Stopwatch.Frequency / 4;

        private readonly Cmdlet _cmdlet;
        private readonly ProgressRecord _record;
        private readonly long _start = Stopwatch.GetTimestamp();
        private long _lastWritten;
        private bool _shown;

        public ProgressReporter(Cmdlet cmdlet, int id, string activity, string status)
        {
            _cmdlet = cmdlet;
            _record = new ProgressRecord(id, activity, status) { PercentComplete = -1 };
        }

        /// <summary>Call on the pipeline thread only (WriteProgress is not thread-safe).</summary>
        public void Report(long done, long total)
        {
            long now = Stopwatch.GetTimestamp();
            if (now - _start < FirstAfter || (_shown && now - _lastWritten < Interval)) return;
            int percent = total <= 0 ? 100 : (int)(done * 100 / total);
            if (_shown && percent == _record.PercentComplete) return;
            _record.PercentComplete = percent;
            _cmdlet.WriteProgress(_record);
            _shown = true;
            _lastWritten = now;
        }

        public void Complete()
        {
            if (!_shown) return;
            _record.RecordType = ProgressRecordType.Completed;
            _cmdlet.WriteProgress(_record);
        }
    }
}
