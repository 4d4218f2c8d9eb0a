using System;
using System.Collections.Generic;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine.Tests.Infrastructure
{
    /// <summary>
    /// Runs the operations of a fault-injection workload on an image and records what each may leave
    /// behind if the machine stops during it: the guest contents as of the last completed flush, then
    /// after each write not yet flushed (a write in flight counts, since a failure inside it may leave
    /// it half done), and the snapshots whose content is known. After a failure every granule (cluster,
    /// or subcluster with extended L2) of the disk must equal that granule in one of these states: the
    /// old or the new contents of each write, never a mixture inside a granule, never other data.
    /// </summary>
    public sealed class CrashRecorder
    {
        /// <summary>States[0]: the disk as of the last completed flush; then one per unflushed write.</summary>
        public List<byte[]> States { get; } = new List<byte[]>();
        /// <summary>Snapshots that exist for sure, with the guest contents each must read.</summary>
        public Dictionary<string, byte[]> Snapshots { get; } = new Dictionary<string, byte[]>();
        /// <summary>Snapshots being created or deleted when the failure came: each may exist or not, and reads its content if it does.</summary>
        public Dictionary<string, byte[]> SnapshotsInDoubt { get; } = new Dictionary<string, byte[]>();
        /// <summary>Virtual sizes the disk may have (a resize in flight adds the new one).</summary>
        public List<long> Lengths { get; } = new List<long>();

        /// <summary>capacity: the largest virtual size the workload reaches (states are kept that long; beyond the disk is zero).</summary>
        public CrashRecorder(byte[] initial, long length, long capacity)
        {
            var first = new byte[capacity];
            Array.Copy(initial, first, initial.Length);
            States.Add(first);
            Lengths.Add(length);
        }

        public byte[] Model => States[States.Count - 1];
        public long Length => Lengths[Lengths.Count - 1];

        private byte[] NextState()
        {
            var next = (byte[])Model.Clone();
            States.Add(next);
            return next;
        }

        public void Write(Qcow2Image disk, long offset, byte[] data)
        {
            Array.Copy(data, 0, NextState(), offset, data.Length);
            disk.Write(offset, data, 0, data.Length);
        }

        public void Zero(Qcow2Image disk, long offset, long length)
        {
            Array.Clear(NextState(), (int)offset, (int)length);
            disk.WriteZeroes(offset, length);
        }

        public void Flush(Qcow2Image disk)
        {
            disk.Flush();
            Settle();
        }

        /// <summary>Everything so far is durable: one state remains.</summary>
        private void Settle()
        {
            var model = Model;
            States.Clear();
            States.Add(model);
            long length = Length;
            Lengths.Clear();
            Lengths.Add(length);
        }

        /// <summary>Creating a snapshot flushes the disk first and ends with the snapshot durable.</summary>
        public void CreateSnapshot(Qcow2Image disk, string name)
        {
            SnapshotsInDoubt[name] = (byte[])Model.Clone();
            disk.CreateSnapshot(name);
            SnapshotsInDoubt.Remove(name);
            Snapshots[name] = (byte[])Model.Clone();
            Settle();
        }

        public void DeleteSnapshot(Qcow2Image disk, string name)
        {
            SnapshotsInDoubt[name] = Snapshots[name];
            Snapshots.Remove(name);
            disk.DeleteSnapshot(name);
            SnapshotsInDoubt.Remove(name);
        }

        /// <summary>Applying a snapshot is a write of the whole disk (old or new contents per granule until a flush).</summary>
        public void ApplySnapshot(Qcow2Image disk, string name)
        {
            Array.Copy(Snapshots[name], NextState(), Snapshots[name].Length);
            disk.ApplySnapshot(name);
        }

        /// <summary>Growing: the disk has the old or the new size; the new part reads zero.</summary>
        public void Grow(Qcow2Image disk, long newSize)
        {
            Lengths.Add(newSize);
            NextState();
            disk.Resize(newSize, allowShrink: false);
        }

        /// <summary>
        /// Null when every granule of the disk read back (padded with zeros to the capacity) equals that
        /// granule in one of the states; otherwise what differs first.
        /// </summary>
        public string FindGranuleInNoState(byte[] actual, int granule)
        {
            if (!Lengths.Contains(actual.Length))
                return $"the disk is {actual.Length} bytes; expected one of {string.Join(", ", Lengths)}";
            var padded = new byte[Model.Length];
            Array.Copy(actual, padded, actual.Length);
            for (int start = 0; start < padded.Length; start += granule)
            {
                int length = Math.Min(granule, padded.Length - start);
                var piece = padded.AsSpan(start, length);
                bool matched = false;
                foreach (var state in States)
                    if (piece.SequenceEqual(state.AsSpan(start, length))) { matched = true; break; }
                if (!matched)
                {
                    int i = 0;
                    while (piece[i] == States[0][start + i]) i++;
                    return $"granule at guest offset 0x{start:X} ({granule} bytes) matches none of the {States.Count} states " +
                           $"(flushed, then each unflushed write); first byte differing from the flushed state at 0x{start + i:X}: " +
                           $"read 0x{piece[i]:X2}, flushed 0x{States[0][start + i]:X2}";
                }
            }
            return null;
        }
    }
}
