namespace QcowPS.Engine.Nbd
{
    public enum NbdServerState
    {
        Running,
        /// <summary>No new connections; in-flight requests are being answered and the images flushed.</summary>
        Stopping,
        Stopped,
    }
}
