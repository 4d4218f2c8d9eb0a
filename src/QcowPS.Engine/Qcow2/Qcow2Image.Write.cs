namespace QcowPS.Engine.Qcow2
{
    // Allocation and writes (QEMU: qcow2_co_pwritev_part, qcow2_alloc_cluster_offset). Filled in by the write engine.
    public sealed partial class Qcow2Image
    {
        private void PrepareForWriting(OpenOptions options)
        {
        }

        private void CloseForWriting()
        {
        }
    }
}
