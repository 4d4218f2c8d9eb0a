using System;
using QcowPS.Engine.IO;

namespace QcowPS.Engine.Tests.Infrastructure
{
    /// <summary>
    /// A host file that fails its Nth write or flush (counting both), and everything after it, like a
    /// machine that lost power or a disk that filled up at that moment. Shared counters let one test
    /// count the events of a whole workload across several files.
    /// </summary>
    public sealed class FaultInjectingFile : IHostFile
    {
        public sealed class Plan
        {
            public long FailAt = long.MaxValue;
            public long Events;
            public bool Failed;
            /// <summary>Fail only writes (a full disk) rather than writes and flushes.</summary>
            public bool WritesOnly;
            public System.Collections.Generic.List<string> Log;
        }

        private readonly IHostFile _inner;
        private readonly Plan _plan;

        public FaultInjectingFile(IHostFile inner, Plan plan)
        {
            _inner = inner;
            _plan = plan;
        }

        private void Event(string what)
        {
            // Conversions write from several threads at once: count under a lock.
            lock (_plan) CountEvent(what);
        }

        private void CountEvent(string what)
        {
            if (_plan.Failed) throw new QcowException(QcowErrorKind.IoError, _inner.Path, $"injected failure (after event {_plan.FailAt}): {what}");
            _plan.Events++;
            _plan.Log?.Add($"{_plan.Events}: {what}");
            if (_plan.Events >= _plan.FailAt)
            {
                _plan.Failed = true;
                throw new QcowException(QcowErrorKind.IoError, _inner.Path, $"injected failure at event {_plan.Events}: {what}");
            }
        }

        public string Path => _inner.Path;
        public bool CanWrite => _inner.CanWrite;
        public long Length => _inner.Length;
        public int ReadAt(long offset, byte[] buffer, int index, int count) => _inner.ReadAt(offset, buffer, index, count);

        public void WriteAt(long offset, byte[] buffer, int index, int count)
        {
            Event($"write {count} bytes at 0x{offset:X}");
            _inner.WriteAt(offset, buffer, index, count);
        }

        public long CopyFrom(IHostFile source, long sourceOffset, long offset, long count)
        {
            Event($"copy {count} bytes to 0x{offset:X}");
            return _inner.CopyFrom(source, sourceOffset, offset, count);
        }

        public void SetLength(long length)
        {
            Event($"set length {length}");
            _inner.SetLength(length);
        }

        public void Flush()
        {
            if (!_plan.WritesOnly) Event("flush");
            else if (_plan.Failed) throw new QcowException(QcowErrorKind.IoError, _inner.Path, "injected failure: flush after a failed write");
            _inner.Flush();
        }

        public bool TryFindData(long offset, out long dataStart, out long dataEnd) => _inner.TryFindData(offset, out dataStart, out dataEnd);

        public bool TryPunchHole(long offset, long length) => _inner.TryPunchHole(offset, length);

        public void Dispose() => _inner.Dispose();
    }
}
