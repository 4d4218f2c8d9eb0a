using System;
using System.Collections.Generic;

namespace QcowPS.Engine.Tests.Infrastructure
{
    /// <summary>
    /// Seeded random guest writes applied to a disk and to a plain byte-array model at the same time:
    /// aligned and unaligned, tiny and large, overlapping, data and zeroing. Every operation is logged,
    /// so a failure names its seed and step and the same seed replays the same operations.
    /// </summary>
    public sealed class Workload
    {
        private readonly Random _random;
        private readonly string _testName;
        public byte[] Model { get; }
        public int Seed { get; }
        /// <summary>Operations done so far; the step a failure happened at.</summary>
        public int Step { get; private set; }
        /// <summary>One line per operation: what it did, where and with what.</summary>
        public List<string> Log { get; } = new List<string>();

        public Workload(int seed, byte[] initial, string testName = null)
        {
            Seed = seed;
            _random = new Random(seed);
            _testName = testName ?? "WriteWorkloadTests";
            Model = initial;
        }

        /// <summary>A failure message naming the seed, the step and the command that replays it.</summary>
        public string Describe(string what) =>
            $"{what} [seed {Seed}, step {Step}; replay: {WorkloadSeed.ReplayCommand(_testName, Seed)}]";

        public void Run(VirtualDisk disk, int operations, double zeroShare = 0.2)
        {
            long size = Model.Length;
            for (int i = 0; i < operations; i++)
            {
                int shape = _random.Next(10);
                long length = shape switch
                {
                    < 3 => _random.Next(1, 700),                         // tiny, unaligned
                    < 6 => 512 * _random.Next(1, 300),                   // sector multiples
                    < 8 => 65536L * _random.Next(1, 5),                  // whole clusters
                    _ => _random.Next(1, 1 << 20),                       // large, anything
                };
                length = Math.Min(length, size);
                long offset = shape % 2 == 0 ? _random.NextInt64(0, size - length + 1)
                    : Math.Min(size - length, (_random.NextInt64(0, size) / 65536) * 65536);
                Step++;
                try
                {
                    if (_random.NextDouble() < zeroShare)
                    {
                        Log.Add($"{Step}: zero 0x{offset:X} +{length}");
                        disk.WriteZeroes(offset, length);
                        Array.Clear(Model, (int)offset, (int)length);
                    }
                    else
                    {
                        var data = new byte[length];
                        if (_random.Next(3) == 0) _random.NextBytes(data);
                        else Array.Fill(data, (byte)_random.Next(1, 256));
                        Log.Add($"{Step}: write 0x{offset:X} +{length} first 0x{data[0]:X2} last 0x{data[length - 1]:X2}");
                        disk.Write(offset, data, 0, data.Length);
                        Array.Copy(data, 0, Model, offset, length);
                    }
                    if (_random.Next(15) == 0)
                    {
                        Log.Add($"{Step}: flush");
                        disk.Flush();
                    }
                }
                catch (Exception e) when (!(e is WorkloadFailedException))
                {
                    throw new WorkloadFailedException(Describe($"{Log[Log.Count - 1]} threw {e.GetType().Name}: {e.Message}"), e);
                }
            }
        }
    }

}
