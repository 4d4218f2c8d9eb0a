using System.Threading;

namespace QcowPS.Engine.Operations.Conversion
{
    /// <summary>A counting gate for chunks in flight: the reader waits on it, the writer releases it; no spinning.</summary>
    internal sealed class ChunkSlots
    {
        private readonly object _gate = new object();
        private int _free;

        public ChunkSlots(int count) { _free = count; }

        public void Wait(CancellationToken token)
        {
            lock (_gate)
            {
                while (_free == 0)
                {
                    token.ThrowIfCancellationRequested();
                    Monitor.Wait(_gate, 100);
                }
                _free--;
            }
        }

        public void Release()
        {
            lock (_gate)
            {
                _free++;
                Monitor.Pulse(_gate);
            }
        }
    }
}
