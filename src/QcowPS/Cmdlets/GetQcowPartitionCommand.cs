using System.Collections.Generic;
using System.Management.Automation;
using QcowPS.Engine.Guest;
using QcowPS.Engine.Guest.Partitions;

namespace QcowPS.Cmdlets
{
    /// <summary>Lists the MBR or GPT partitions of the guest disk, like sfdisk --json / virt-filesystems --partitions.</summary>
    [Cmdlet(VerbsCommon.Get, "QcowPartition", DefaultParameterSetName = PathSet)]
    [OutputType(typeof(QcowPartition))]
    public sealed class GetQcowPartitionCommand : GuestReadCmdlet
    {
        protected override void ProcessImage(string path)
        {
            PartitionTable table = null;
            var found = new List<QcowPartition>();
            Inspect(path, disk =>
            {
                table = PartitionTableReader.Read(disk);
                found.AddRange(GuestInspector.Partitions(disk, table));
            });
            WarnAbout(path, table);
            foreach (var p in found)
            {
                p.Path = path;
                WriteObject(p);
            }
        }
    }
}
