using System;
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
    /// operation tells the user nothing. Each record sent is a new object: a host or a runspace's
    /// progress stream keeps the objects it is given, so one object re-sent would show every record
    /// as the last state.
    /// </summary>
    internal sealed class ProgressReporter
    {
        private static readonly long FirstAfter = Stopwatch.Frequency / 2;
        private static readonly long Interval = Stopwatch.Frequency / 4;

        /// <summary>
        /// The time source in Stopwatch ticks. The tests replace it with a clock that advances a fixed
        /// step per reading, so the pacing is tested independently of how fast the machine is.
        /// </summary>
        internal static Func<long> Clock { get; set; } = Stopwatch.GetTimestamp;

        private readonly Cmdlet _cmdlet;
        private readonly int _id;
        private readonly string _activity;
        private readonly string _status;
        private readonly long _start = Clock();
        private long _lastWritten;
        private int _lastPercent = -1;
        private bool _shown;

        public ProgressReporter(Cmdlet cmdlet, int id, string activity, string status)
        {
            _cmdlet = cmdlet;
            _id = id;
            _activity = activity;
            _status = status;
        }

        /// <summary>Call on the pipeline thread only (WriteProgress is not thread-safe).</summary>
        public void Report(long done, long total)
        {
            long now = Clock();
            if (now - _start < FirstAfter || (_shown && now - _lastWritten < Interval)) return;
            int percent = total <= 0 ? 100 : (int)(done * 100 / total);
            if (_shown && percent == _lastPercent) return;
            _lastPercent = percent;
            _cmdlet.WriteProgress(new ProgressRecord(_id, _activity, _status) { PercentComplete = percent });
            _shown = true;
            _lastWritten = now;
        }

        public void Complete()
        {
            if (!_shown) return;
            _cmdlet.WriteProgress(new ProgressRecord(_id, _activity, _status) { PercentComplete = _lastPercent, RecordType = ProgressRecordType.Completed });
        }
    }
}
