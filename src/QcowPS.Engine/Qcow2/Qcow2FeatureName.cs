namespace QcowPS.Engine.Qcow2
{
    /// <summary>One entry of the feature name table extension.</summary>
    public sealed class Qcow2FeatureName
    {
        public int Type { get; set; }   // 0 incompatible, 1 compatible, 2 autoclear
        public int Bit { get; set; }
        public string Name { get; set; }
        public override string ToString() => $"{(Type == 0 ? "incompatible" : Type == 1 ? "compatible" : "autoclear")} bit {Bit}: {Name}";
    }
}
