using System.Collections.Generic;

namespace QcowPS.Engine.Guest.Partitions
{
    /// <summary>What the partition-table readers found on a disk: the style, its partitions, and what was odd.</summary>
    public sealed class PartitionTable
    {
        public const string Gpt = "Gpt";
        public const string Mbr = "Mbr";
        /// <summary>No table: the whole disk is one volume.</summary>
        public const string None = "None";

        public string Style { get; set; } = None;
        public List<QcowPartition> Partitions { get; } = new List<QcowPartition>();
        /// <summary>Problems that did not stop the reading (a damaged primary GPT, a hybrid MBR, ...).</summary>
        public List<string> Warnings { get; } = new List<string>();
        /// <summary>
        /// False when the table could not be verified (a bad CRC with no good copy, entries outside the disk,
        /// overlapping partitions): nothing may be written inside it on its word.
        /// </summary>
        public bool Verified { get; set; } = true;
    }
}
