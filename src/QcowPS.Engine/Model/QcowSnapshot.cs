using System;

namespace QcowPS
{
    /// <summary>One internal snapshot (Get-QcowSnapshot, New-QcowSnapshot).</summary>
    public sealed class QcowSnapshot
    {
        public string Path { get; set; }
        public string Id { get; set; }
        public string Name { get; set; }
        /// <summary>When the snapshot was taken (UTC).</summary>
        public DateTime Date { get; set; }
        /// <summary>Guest run time at the snapshot (VM clock).</summary>
        public TimeSpan VmClock { get; set; }
        public long VmStateSize { get; set; }
        /// <summary>Virtual disk size at snapshot time.</summary>
        public long DiskSize { get; set; }
        public long L1TableOffset { get; set; }
        public long L1Size { get; set; }
        public int ExtraDataSize { get; set; }
        /// <summary>Record/replay instruction count (-1 when disabled), null when not recorded.</summary>
        public long? Icount { get; set; }

        public override string ToString() => $"{Id} {Name}";
    }
}
