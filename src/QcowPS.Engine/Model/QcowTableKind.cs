namespace QcowPS
{
    public enum QcowTableKind
    {
        L1,
        L2,
        RefcountTable,
        RefcountBlock,
    }
}
