using System.Collections.Generic;
using System.Threading;

namespace QcowPS.Engine.Operations.Conversion
{
    /// <summary>
    /// A small blocking FIFO for the conversion pipeline. Waiting threads sleep on a monitor rather than
    /// spin: with two cores, a spinning consumer takes CPU from the threads that compress.
    /// Capacity is not enforced here (the pipeline bounds the chunks in flight itself).
    /// </summary>
    internal sealed class WorkQueue<T> where T : class
    {
        private readonly Queue<T> _items = new Queue<T>();
        private readonly Queue<T> _urgent = new Queue<T>();
        private bool _completed;

        /// <summary>Adds an item that is taken before every ordinary one (work that frees memory).</summary>
        public void AddUrgent(T item)
        {
            lock (_items)
            {
                _urgent.Enqueue(item);
                Monitor.Pulse(_items);
            }
        }

        public void Add(T item)
        {
            lock (_items)
            {
                _items.Enqueue(item);
                Monitor.Pulse(_items);
            }
        }

        public void Complete()
        {
            lock (_items)
            {
                _completed = true;
                Monitor.PulseAll(_items);
            }
        }

        /// <summary>The next item, or null once the queue is completed and empty or the token is cancelled.</summary>
        public T Take(CancellationToken token)
        {
            lock (_items)
            {
                while (_items.Count == 0 && _urgent.Count == 0)
                {
                    if (_completed || token.IsCancellationRequested) return null;
                    Monitor.Wait(_items, 100);
                }
                return _urgent.Count > 0 ? _urgent.Dequeue() : _items.Dequeue();
            }
        }
    }
}
