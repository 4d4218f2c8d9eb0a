using System;
using System.Collections.Generic;

namespace QcowPS.Engine
{
    /// <summary>
    /// A bounded LRU cache of one-cluster metadata tables (qcow2 L2 tables and refcount blocks, QED L2
    /// tables), format-neutral, kept as the
    /// raw bytes of the cluster so that write-back is a plain write (docs: qcow2-cache.txt). Dirty
    /// tables are written back only through the owner's ordered flush, never silently on eviction:
    /// when the cache is full of dirty tables the owner is asked to flush first.
    /// </summary>
    internal sealed class MetadataCache
    {
        private sealed class Node
        {
            public long Offset;
            public byte[] Data;
            public bool Dirty;
            public LinkedListNode<Node> Position;
        }

        private readonly Dictionary<long, Node> _byOffset = new Dictionary<long, Node>();
        private readonly LinkedList<Node> _lru = new LinkedList<Node>();
        private readonly int _capacity;
        private readonly int _tableSize;
        private readonly Func<long, byte[], byte[]> _load;
        private int _dirtyCount;

        /// <summary>Called when every slot is dirty and one must be freed: the owner flushes in order.</summary>
        public Action FlushRequested { get; set; }

        public string Name { get; }
        public int DirtyCount => _dirtyCount;
        public long Hits { get; private set; }
        public long Misses { get; private set; }

        /// <param name="load">Fills a buffer with the table at an offset (validating it), returns it.</param>
        public MetadataCache(string name, int tableSize, int capacity, Func<long, byte[], byte[]> load)
        {
            Name = name;
            _tableSize = tableSize;
            _capacity = Math.Max(4, capacity);
            _load = load;
        }

        public byte[] Get(long offset)
        {
            if (_byOffset.TryGetValue(offset, out var node))
            {
                Hits++;
                Touch(node);
                return node.Data;
            }
            Misses++;
            MakeRoom();
            var data = _load(offset, new byte[_tableSize]);
            Insert(offset, data, dirty: false);
            return data;
        }

        /// <summary>Puts a freshly created table (e.g. a new L2 table) into the cache, marked dirty.</summary>
        public byte[] Create(long offset, byte[] contents = null)
        {
            if (_byOffset.TryGetValue(offset, out var existing))
            {
                if (contents != null) Array.Copy(contents, existing.Data, _tableSize);
                else Array.Clear(existing.Data, 0, _tableSize);
                MarkDirty(offset);
                Touch(existing);
                return existing.Data;
            }
            MakeRoom();
            var buffer = new byte[_tableSize];
            if (contents != null) Array.Copy(contents, buffer, _tableSize);
            Insert(offset, buffer, dirty: true);
            return buffer;
        }

        public bool Contains(long offset) => _byOffset.ContainsKey(offset);

        /// <summary>Marks a table dirty; if it was evicted meanwhile, its (caller-held) contents go back in.</summary>
        public void MarkDirty(long offset, byte[] data = null)
        {
            if (!_byOffset.TryGetValue(offset, out var node))
            {
                if (data == null) throw new InvalidOperationException($"{Name} table at 0x{offset:X} is not cached");
                Insert(offset, data, dirty: true);
                return;
            }
            if (!node.Dirty)
            {
                node.Dirty = true;
                _dirtyCount++;
            }
        }

        /// <summary>The dirty tables in offset order (sequential writes), for the owner's flush.</summary>
        public List<KeyValuePair<long, byte[]>> DirtyTables()
        {
            var list = new List<KeyValuePair<long, byte[]>>(_dirtyCount);
            foreach (var node in _byOffset.Values)
                if (node.Dirty) list.Add(new KeyValuePair<long, byte[]>(node.Offset, node.Data));
            list.Sort((a, b) => a.Key.CompareTo(b.Key));
            return list;
        }

        public void MarkClean(long offset)
        {
            if (_byOffset.TryGetValue(offset, out var node) && node.Dirty)
            {
                node.Dirty = false;
                _dirtyCount--;
            }
        }

        /// <summary>Forgets a table (its cluster was freed or moved); a dirty one is dropped unwritten.</summary>
        public void Remove(long offset)
        {
            if (_byOffset.TryGetValue(offset, out var node))
            {
                if (node.Dirty) _dirtyCount--;
                _lru.Remove(node.Position);
                _byOffset.Remove(offset);
            }
        }

        /// <summary>Drops every clean table (after the file changed underneath, e.g. a repair).</summary>
        public void Clear()
        {
            _byOffset.Clear();
            _lru.Clear();
            _dirtyCount = 0;
        }

        private void Touch(Node node)
        {
            if (node.Position != _lru.First)
            {
                _lru.Remove(node.Position);
                _lru.AddFirst(node.Position);
            }
        }

        private void Insert(long offset, byte[] data, bool dirty)
        {
            var node = new Node { Offset = offset, Data = data, Dirty = dirty };
            node.Position = _lru.AddFirst(node);
            _byOffset[offset] = node;
            if (dirty) _dirtyCount++;
        }

        /// <summary>
        /// Evicts the least recently used clean table if full. Its buffer is not reused: a caller may
        /// still be working on the table it got earlier in the same operation.
        /// </summary>
        private void MakeRoom()
        {
            if (_byOffset.Count < _capacity) return;
            if (_dirtyCount >= _byOffset.Count)
            {
                if (FlushRequested == null) throw new InvalidOperationException($"{Name} cache is full of dirty tables");
                FlushRequested();
            }
            for (var n = _lru.Last; n != null; n = n.Previous)
            {
                if (n.Value.Dirty) continue;
                _lru.Remove(n);
                _byOffset.Remove(n.Value.Offset);
                return;
            }
            throw new InvalidOperationException($"{Name} cache could not free a slot");
        }
    }
}
