using System;
using System.Collections;
using System.Collections.Generic;
using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.Guest;
using QcowPS.Engine.Guest.Partitions;
using QcowPS.Engine.IO;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>
    /// Writes a new GPT or MBR partition table (guestfish part-disk, Initialize-Disk): one partition over
    /// the whole disk, or the partitions given, each aligned to 1 MiB. Emits the partitions as read back.
    /// </summary>
    [Cmdlet(VerbsCommon.New, "QcowPartitionTable", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(QcowPartition))]
    public sealed class NewQcowPartitionTableCommand : ImageCmdlet
    {
        private static readonly string[] PartitionKeys = { "Size", "Type", "Name" };

        [Parameter]
        [ValidateSet(PartitionTable.Gpt, PartitionTable.Mbr, IgnoreCase = true)]
        public string Style { get; set; } = PartitionTable.Gpt;

        /// <summary>The partitions, in order: @{ Size = 1GB; Type = 'EFI System'; Name = 'esp' }; the last may leave Size out to take the rest.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public Hashtable[] Partition { get; set; }

        /// <summary>Replace an existing partition table (or whatever sector 0 and the whole disk hold).</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        [Parameter]
        public ImageFormat Format { get; set; } = ImageFormat.Auto;

        private List<PartitionSpec> _specs;

        protected override void BeginProcessing()
        {
            base.BeginProcessing();
            _specs = new List<PartitionSpec>();
            if (Partition == null) return;
            for (int i = 0; i < Partition.Length; i++)
            {
                var h = Partition[i];
                foreach (var key in h.Keys)
                    if (Array.FindIndex(PartitionKeys, k => string.Equals(k, key?.ToString(), StringComparison.OrdinalIgnoreCase)) < 0)
                        ThrowTerminatingError(ErrorRecords.Argument("InvalidPartition", h, $"Partition {i + 1}: unknown key '{key}'; the keys are {string.Join(", ", PartitionKeys)}."));
                _specs.Add(new PartitionSpec { Size = SizeOf(Value(h, "Size"), i + 1), Type = Value(h, "Type")?.ToString(), Name = Value(h, "Name")?.ToString() });
            }
        }

        protected override void ProcessImage(string path)
        {
            List<(long first, long count, PartitionSpec spec)> layout;
            // Check on a read-only open first: -WhatIf never opens the image for writing.
            using (var probe = OpenImage(path, new OpenOptions { Format = Format, Lock = LockMode.None }))
            {
                layout = PartitionTableWriter.Layout(probe.Length, Style, _specs, probe.Path);
                if (Refused(probe)) return;
                if (probe is Engine.Qcow2.Qcow2Image q && q.Header.BitmapCount > 0)
                    WriteWarning($"'{probe.Path}' has {q.Header.BitmapCount} persistent dirty bitmap(s); QcowPS does not update them, so after this write they no longer list every changed block (QEMU treats them as inconsistent).");
            }
            if (!ShouldProcess(path, $"Write a new {Style} partition table with {layout.Count} partition(s)")) return;
            PartitionTable table;
            var partitions = new List<QcowPartition>();
            using (var disk = OpenImage(path, new OpenOptions { Format = Format, Writable = true }))
            {
                if (Refused(disk)) return;
                PartitionTableWriter.Write(disk, Style, _specs);
                table = PartitionTableReader.Read(disk);
                partitions.AddRange(GuestInspector.Partitions(disk, table));
            }
            foreach (var w in table.Warnings) WriteWarning($"{path}: {w}");
            foreach (var p in partitions)
            {
                p.Path = path;
                WriteObject(p);
            }
        }

        /// <summary>Without -Force, a disk that holds a table (or a whole-disk file system) is refused: QcowPS.PartitionTableExists.</summary>
        private bool Refused(VirtualDisk disk)
        {
            if (Force) return false;
            string existing = PartitionTableWriter.ExistingContent(disk);
            if (existing == null) return false;
            WriteError(ErrorRecords.Make("PartitionTableExists", ErrorCategory.ResourceExists, disk.Path, $"'{disk.Path}' is not blank: {existing}. Use -Force to replace it."));
            return true;
        }

        private static object Value(Hashtable h, string key)
        {
            foreach (DictionaryEntry e in h)
                if (string.Equals(e.Key?.ToString(), key, StringComparison.OrdinalIgnoreCase))
                    return e.Value is PSObject p ? p.BaseObject : e.Value;
            return null;
        }

        private long? SizeOf(object value, int number)
        {
            if (value == null) return null;
            try
            {
                if (value is string s) return SizeTransformationAttribute.Parse(s);
                return Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture);
            }
            catch (Exception e) when (e is ArgumentTransformationMetadataException || e is FormatException || e is InvalidCastException || e is OverflowException)
            {
                ThrowTerminatingError(ErrorRecords.Argument("InvalidPartition", value, $"Partition {number}: Size '{value}' is not a size: {e.Message}"));
                return null;
            }
        }
    }
}
