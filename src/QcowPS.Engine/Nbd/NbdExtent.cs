namespace QcowPS.Engine.Nbd
{
    /// <summary>One block status descriptor: a run of the export and its flags in one metadata context.</summary>
    public struct NbdExtent
    {
        public long Offset;
        public long Length;
        public uint Flags;

        public long End => Offset + Length;

        public override string ToString() => $"[{Offset}+{Length}] 0x{Flags:X}";
    }
}
