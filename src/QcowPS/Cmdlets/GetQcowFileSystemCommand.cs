using System.Collections.Generic;
using System.Management.Automation;
using QcowPS.Engine.Guest;
using QcowPS.Engine.Guest.Partitions;

namespace QcowPS.Cmdlets
{
    /// <summary>Lists the file systems in the guest disk with their usage, like virt-df / virt-filesystems --long.</summary>
    [Cmdlet(VerbsCommon.Get, "QcowFileSystem", DefaultParameterSetName = PathSet)]
    [OutputType(typeof(QcowFileSystem))]
    public sealed class GetQcowFileSystemCommand : GuestReadCmdlet
    {
        protected override void ProcessImage(string path)
        {
            PartitionTable table = null;
            var found = new List<QcowFileSystem>();
            Inspect(path, disk =>
            {
                table = PartitionTableReader.Read(disk);
                foreach (var volume in GuestInspector.Volumes(disk, table))
                    if (volume.FileSystem != null) found.Add(GuestInspector.Describe(disk, volume));
            });
            WarnAbout(path, table);
            foreach (var fs in found)
            {
                fs.Path = path;
                WriteObject(fs);
            }
        }
    }
}
