using System;

namespace QcowPS.Engine.Tests.Infrastructure
{
    /// <summary>
    /// Seeded random guest writes applied to a disk and to a plain byte-array model at the same time:
    /// aligned and unaligned, tiny and large, overlapping, data and zeroing.
    /// </summary>
    public sealed class Workload
    {
        private readonly Random _random;
        public byte[] Model { get; }

        public Workload(int seed, byte[] initial)
        {
            _random = new Random(seed);
            Model = initial;
        }

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
                if (_random.NextDouble() < zeroShare)
                {
                    disk.WriteZeroes(offset, length);
                    Array.Clear(Model, (int)offset, (int)length);
                }
                else
                {
                    var data = new byte[length];
                    if (_random.Next(3) == 0) _random.NextBytes(data);
                    else Array.Fill(data, (byte)_random.Next(1, 256));
                    disk.Write(offset, data, 0, data.Length);
                    Array.Copy(data, 0, Model, offset, length);
                }
                if (_random.Next(15) == 0) disk.Flush();
            }
        }
    }
}
