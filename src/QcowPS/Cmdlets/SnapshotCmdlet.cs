using System.Collections.Generic;
using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.Qcow2;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>
    /// Shared by Remove- and Restore-QcowSnapshot: the snapshot by -Name (SnapshotSelector's rule:
    /// exact, else case-insensitive with wildcards) or -Id, from the pipeline too ('snap1' | Remove-QcowSnapshot disk.qcow2).
    /// </summary>
    public abstract class SnapshotCmdlet : ImageCmdlet
    {
        [Parameter(Position = 1, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(SnapshotNameCompleter))]
        public string Name { get; set; }

        /// <summary>The snapshot ID (preferred over -Name when both arrive from Get-QcowSnapshot).</summary>
        [Parameter(ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(SnapshotIdCompleter))]
        public string Id { get; set; }

        /// <summary>-Id when given, else -Name.</summary>
        private protected SnapshotSelector Selector => Id != null ? new SnapshotSelector(null, new[] { Id }) : new SnapshotSelector(new[] { Name }, null);

        /// <summary>
        /// Finds the snapshots on a read-only open, asks ShouldProcess for each, and only then opens the
        /// image for writing (a writable open may repair a dirty image, which -WhatIf must not do).
        /// </summary>
        protected void Change(string path, bool exactlyOne, System.Func<Qcow2Snapshot, string> describe, System.Action<Qcow2Image, Qcow2Snapshot> change)
        {
            if (Id == null && Name == null)
                ThrowTerminatingError(ErrorRecords.Argument("SnapshotNotSpecified", path, "Give the snapshot with -Name or -Id (or pipe it from Get-QcowSnapshot)."));
            var targets = new List<Qcow2Snapshot>();
            var misses = new List<QcowException>();
            using (var image = OpenQcow2(path))
            {
                if (exactlyOne) targets.Add(Selector.SelectOne(image));
                else targets.AddRange(Selector.Select(image, misses.Add));
            }
            foreach (var miss in misses) WriteError(ErrorRecords.From(miss, path));
            var confirmed = targets.FindAll(s => ShouldProcess(path, describe(s)));
            if (confirmed.Count == 0) return;
            using (var image = OpenQcow2(path, writable: true))
                foreach (var s in confirmed)
                {
                    WriteVerbose($"{describe(s)} in '{path}'");
                    change(image, s);
                }
        }
    }

}
