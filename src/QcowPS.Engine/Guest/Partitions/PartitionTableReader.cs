using System.Linq;

namespace QcowPS.Engine.Guest.Partitions
{
    /// <summary>
    /// Finds the partition table of a guest disk: GPT behind a protective (or hybrid) MBR, a plain MBR
    /// with its logical partitions, or none. Partitions that overlap make the table unverified.
    /// </summary>
    public static class PartitionTableReader
    {
        public static PartitionTable Read(VirtualDisk disk)
        {
            var table = new PartitionTable();
            var mbr = new MbrReader(disk);
            var gpt = new GptReader(disk);
            var entries = mbr.ReadPrimaryEntries();
            bool protective = entries != null && entries.Any(e => e.type == PartitionTypes.GptProtective);
            if (protective)
            {
                if (entries.Any(e => e.type != 0 && e.type != PartitionTypes.GptProtective))
                    table.Warnings.Add("The MBR is a hybrid MBR: it lists partitions besides the GPT protective one; the GPT is read");
                gpt.Read(table);
            }
            else if (entries != null)
            {
                mbr.Read(entries, table);
                if (gpt.HasSignature()) table.Warnings.Add("The disk has a GPT signature but an MBR without a protective partition; the MBR is read");
            }
            else if (gpt.HasSignature())
            {
                table.Warnings.Add("The disk has a GPT but no protective MBR");
                gpt.Read(table);
            }
            CheckOverlaps(table);
            return table;
        }

        private static void CheckOverlaps(PartitionTable table)
        {
            // An extended partition holds its logical partitions; every other pair must be disjoint.
            var parts = table.Partitions.Where(p => p.Kind != "Extended").OrderBy(p => p.Offset).ToList();
            for (int i = 1; i < parts.Count; i++)
            {
                if (parts[i].Offset < parts[i - 1].Offset + parts[i - 1].Size)
                {
                    table.Warnings.Add($"Partitions {parts[i - 1].Number} and {parts[i].Number} overlap");
                    table.Verified = false;
                }
            }
        }
    }
}
