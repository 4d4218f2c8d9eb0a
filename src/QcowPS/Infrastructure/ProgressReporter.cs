using System.Management.Automation;

namespace QcowPS.Infrastructure
{
    /// <summary>Write-Progress for long work: a record per whole percent, and the completion record at the end.</summary>
    internal sealed class ProgressReporter
    {
        private readonly Cmdlet _cmdlet;
        private readonly ProgressRecord _record;

        public ProgressReporter(Cmdlet cmdlet, int id, string activity, string status)
        {
            _cmdlet = cmdlet;
            _record = new ProgressRecord(id, activity, status) { PercentComplete = -1 };
        }

        /// <summary>Call on the pipeline thread only (WriteProgress is not thread-safe).</summary>
        public void Report(long done, long total)
        {
            int percent = total <= 0 ? 100 : (int)(done * 100 / total);
            if (percent == _record.PercentComplete) return;
            _record.PercentComplete = percent;
            _cmdlet.WriteProgress(_record);
        }

        public void Complete()
        {
            _record.RecordType = ProgressRecordType.Completed;
            _cmdlet.WriteProgress(_record);
        }
    }
}
