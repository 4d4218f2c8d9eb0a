using System;
using System.Collections.Generic;
using QcowPS.Engine.Guest.FileSystems;
using QcowPS.Engine.Guest.Partitions;

namespace QcowPS.Engine.Guest
{
    /// <summary>What is inside a virtual disk: its partitions and the file systems on them (or on the whole disk).</summary>
    public static class GuestInspector
    {
        /// <summary>The partitions, each with the type of what is found in it.</summary>
        public static List<QcowPartition> Partitions(VirtualDisk disk, PartitionTable table)
        {
            var result = new List<QcowPartition>();
            foreach (var p in table.Partitions)
            {
                if (p.Kind != "Extended" && p.Offset + p.Size <= disk.Length)
                    p.FileSystem = FileSystemProbe.Probe(disk, p.Offset, p.Size)?.Type;
                p.Path = disk.Path;
                result.Add(p);
            }
            return result;
        }

        /// <summary>The volumes that may hold a file system: the partitions that lie inside the disk, or the whole disk.</summary>
        public static List<GuestVolume> Volumes(VirtualDisk disk, PartitionTable table)
        {
            var volumes = new List<GuestVolume>();
            if (table.Style == PartitionTable.None)
                volumes.Add(new GuestVolume { Number = 0, Offset = 0, Length = disk.Length });
            foreach (var p in table.Partitions)
                if (p.Kind != "Extended" && p.Offset + p.Size <= disk.Length)
                    volumes.Add(new GuestVolume { Number = p.Number, Offset = p.Offset, Length = p.Size });
            foreach (var v in volumes) v.FileSystem = FileSystemProbe.Probe(disk, v.Offset, v.Length);
            return volumes;
        }

        public static QcowFileSystem Describe(VirtualDisk disk, GuestVolume volume)
        {
            var fs = volume.FileSystem;
            string refusal = fs.RefusalReason;
            return new QcowFileSystem
            {
                Path = disk.Path, Partition = volume.Number, Type = fs.Type, Label = fs.Label, Uuid = fs.Uuid, Offset = volume.Offset,
                Size = fs.Size, Used = fs.Used, Available = fs.Available, BlockSize = fs.BlockSize,
                UsePercent = fs.Size > 0 && fs.Used.HasValue && fs.Available.HasValue && fs.Used + fs.Available > 0
                    ? Math.Round(100.0 * fs.Used.Value / (fs.Used.Value + fs.Available.Value), 1) : (double?)null,
                Optimizable = refusal == null, NotOptimizableReason = refusal,
            };
        }
    }
}
