using System;
using System.IO;
using System.Linq;
using QcowPS.Engine.Operations;
using QcowPS.Engine.Qcow2;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;

namespace QcowPS.Engine.Tests
{
    public class CompressedClusterTests
    {
        [Fact]
        public void KevinWolfsExampleEntryDecodes()
        {
            // QEMU mailing list, 2016: 64 KiB clusters, entry 0x4AC00000003D9750.
            var e = new L2Entry(0x4AC00000003D9750UL, 0, 16, false, false);
            Assert.True(e.IsCompressed);
            Assert.Equal(ClusterType.Compressed, e.Type);
            Assert.Equal(0x3D9750, e.CompressedOffset);
            Assert.Equal(43 + 1, e.CompressedSectors);           // 43 additional sectors beyond the first
            Assert.Equal(0x3DEE00, e.CompressedOffset + e.CompressedSize);  // the range ends at a sector boundary
        }

        [Theory]
        [InlineData(9)]
        [InlineData(12)]
        [InlineData(16)]
        [InlineData(21)]
        public void CompressedFieldWidthsFollowTheClusterSize(int clusterBits)
        {
            // x = 62 - (cluster_bits - 8): offset below bit x, sector count from x to 61.
            int x = 62 - (clusterBits - 8);
            ulong sectors = (1UL << (clusterBits - 8)) - 1;  // the largest count
            ulong offset = (1UL << Math.Min(x, 56)) - 512 + 17;
            var e = new L2Entry((1UL << 62) | (sectors << x) | offset, 0, clusterBits, false, false);
            Assert.Equal((long)offset, e.CompressedOffset);
            Assert.Equal((int)sectors + 1, e.CompressedSectors);
        }

        [SkippableFact]
        public void LastCompressedClusterRunningPastTheEndOfTheFileStillReads()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = dir.File("c.qcow2");
            Qemu.Img("create", "-f", "qcow2", path, "4M");
            // Compressed writes (qemu-io write -c) append their streams unpadded, as in the image Kevin
            // Wolf described: the last cluster's whole-sector range runs past the end of the file.
            Qemu.IoCommands(path, "qcow2", "write -P 1 0 64k", "write -c -P 7 1M 64k", "write -c -P 9 2M 64k", "write -c -P 11 3M 64k");
            long end = new FileInfo(path).Length;

            using var disk = (Qcow2Image)DiskImage.Open(path);
            var last = disk.EnumerateClusters(0, disk.Length, true).Where(c => c.Type == ClusterType.Compressed)
                .OrderBy(c => c.HostOffset).Last();
            Assert.True(end % 512 != 0, "the file should not end on a sector boundary");
            Assert.True(last.HostOffset + last.CompressedSize > end, "the last compressed range should run past the end of the file");
            ImageAssert.MatchesQemu(dir, path, disk);
        }

        [SkippableTheory]
        [InlineData(true)]
        [InlineData(false)]
        public void ReadsOnManyThreadsMatchOneThreadsRead(bool compressed)
        {
            // Inflation and read-only data reads run outside the image's lock: threads reading whole
            // clusters and odd pieces at once must each get their own bytes.
            Qemu.Require();
            using var dir = new TempDir();
            string raw = dir.File("src.raw");
            var random = new Random(1234);
            var block = new byte[65536];
            using (var f = new FileStream(raw, FileMode.Create))
                for (int i = 0; i < 48; i++)
                {
                    // Compressible but different in every cluster (and every 4 KiB of it).
                    for (int j = 0; j < block.Length; j++) block[j] = (byte)(j % 4096 < 64 ? random.Next(256) : i);
                    f.Write(block);
                }
            string path = dir.File("c.qcow2");
            if (compressed) Qemu.Img("convert", "-c", "-O", "qcow2", raw, path);
            else Qemu.Img("convert", "-O", "qcow2", raw, path);
            var expected = File.ReadAllBytes(raw);

            using var disk = (Qcow2Image)DiskImage.Open(path);
            if (compressed) Assert.Contains(disk.EnumerateClusters(0, disk.Length, true), c => c.Type == ClusterType.Compressed);
            var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
            var threads = Enumerable.Range(0, 8).Select(t => new System.Threading.Thread(() =>
            {
                var rng = new Random(t);
                // An exception escaping a thread would end the whole test process, not just this test.
                try
                {
                    for (int k = 0; k < 300; k++)
                    {
                        bool whole = rng.Next(2) == 0;
                        long offset = whole ? rng.Next(48) * 65536L : rng.Next(expected.Length - 1);
                        int count = whole ? 65536 * (1 + rng.Next(3)) : 1 + rng.Next(100_000);
                        count = (int)Math.Min(count, expected.Length - offset);
                        var buffer = new byte[count];
                        disk.Read(offset, buffer, 0, count);
                        if (!buffer.AsSpan().SequenceEqual(expected.AsSpan((int)offset, count)))
                            failures.Add($"thread {t}: {count} bytes at {offset} differ");
                    }
                }
                catch (Exception e)
                {
                    failures.Add($"thread {t}: {e.GetType().Name}: {e.Message}");
                }
            })).ToList();
            threads.ForEach(th => th.Start());
            foreach (var th in threads) Assert.True(th.Join(TimeSpan.FromSeconds(60)), "a reading thread did not finish");
            Assert.Empty(failures);
        }

        [SkippableFact]
        public void SharedHostClusterShowsOneRefcountPerUser()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string raw = dir.File("src.raw");
            // Highly compressible data: many compressed clusters share each host cluster.
            var block = new byte[65536];
            for (int i = 0; i < block.Length; i++) block[i] = (byte)(i % 251 == 0 ? i / 251 : 'x');
            using (var f = new FileStream(raw, FileMode.Create))
                for (int i = 0; i < 64; i++) { block[0] = (byte)i; f.Write(block); }
            string path = dir.File("c.qcow2");
            Qemu.Img("convert", "-c", "-O", "qcow2", raw, path);

            using var disk = (Qcow2Image)DiskImage.Open(path);
            var clusters = ImageInspector.Clusters(disk, 0, disk.Length, true).Where(c => c.ClusterType == ClusterType.Compressed).ToList();
            Assert.True(clusters.Count >= 32);
            int cb = disk.ClusterBits;
            // Users of a host cluster: compressed clusters whose sector range touches it.
            var users = clusters
                .SelectMany(c => Enumerable.Range(0, int.MaxValue).Select(k => (c.HostOffset.Value & ~511L) + (long)k * 512)
                    .TakeWhile(s => s < (c.HostOffset.Value & ~511L) + c.CompressedSectors.Value * 512L)
                    .Select(s => s >> cb).Distinct())
                .GroupBy(h => h).ToDictionary(g => g.Key, g => g.Count());
            Assert.Contains(users.Values, v => v > 1);
            foreach (var c in clusters)
                Assert.Equal((ulong)users[c.HostOffset.Value >> cb], c.Refcount);
            var check = Qemu.Json("check", "--output=json", path);
            Assert.Equal(0, check.TryGetProperty("corruptions", out var corr) ? corr.GetInt32() : 0);
        }

        [SkippableFact]
        public void ExabyteImageFromTheDocsOpensAndReadsItsLastSector()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = dir.File("huge.qcow2");
            Qemu.Img("create", "-f", "qcow2", path, "1048576T", "-o", "cluster_size=2M");
            var watch = System.Diagnostics.Stopwatch.StartNew();
            using var disk = DiskImage.Open(path);
            Assert.Equal(1152921504606846976L, disk.Length);
            var sector = new byte[512];
            sector[0] = 0xFF;
            disk.Read(disk.Length - 512, sector, 0, 512);
            watch.Stop();
            Assert.All(sector, b => Assert.Equal(0, b));
            // Time is reported, not asserted (speed belongs to bench/); the generous bound only catches a hang.
            Console.WriteLine($"exabyte image: open + last-sector read took {watch.ElapsedMilliseconds} ms");
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30));
        }
    }
}
