using System.Collections.Generic;

namespace QcowPS.Engine.Guest.FileSystems
{
    /// <summary>
    /// The value of one NTFS attribute as found in an MFT record: either resident bytes, or a checked
    /// run list (each run inside the volume, none overlapping another, together covering the allocated
    /// size) with the sizes from the attribute header.
    /// </summary>
    internal sealed class NtfsAttributeData
    {
        /// <summary>The value itself when the attribute is resident; null when it lives in clusters.</summary>
        public byte[] Resident;
        /// <summary>(first cluster, cluster count) in VCN order; empty for a resident value.</summary>
        public List<(long Lcn, long Count)> Runs = new List<(long Lcn, long Count)>();
        public long DataSize;
        /// <summary>Bytes past the initialized size read as zeros, whatever the clusters hold.</summary>
        public long InitializedSize;
    }
}
