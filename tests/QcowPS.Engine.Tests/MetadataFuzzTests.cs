using System.Collections.Generic;
using System;
using System.IO;
using System.Linq;
using System.Threading.Tasks;
using QcowPS.Engine.Qcow2;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;

namespace QcowPS.Engine.Tests
{
    /// <summary>
    /// Structured fuzzing of the metadata itself: random 64-bit values written over entries of the L1
    /// table, L2 tables, refcount table, refcount blocks and snapshot table. Reading, listing, checking,
    /// repairing and writing either work or end in a QcowException; nothing else, nothing hangs.
    /// </summary>
    public class MetadataFuzzTests
    {
        [SkippableFact]
        public void RandomMetadataEntriesNeverCrashOrHang()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string good = dir.File("good.qcow2");
            Qemu.Img("create", "-f", "qcow2", "-o", "cluster_size=4096", good, "4M");
            Qemu.IoCommands(good, "qcow2", "write -P 1 0 300k", "write -c -P 2 1M 64k", "write -z 2M 64k");
            Qemu.Img("snapshot", "-c", "s1", good);
            Qemu.IoCommands(good, "qcow2", "write -P 3 100k 20k");
            var regions = new List<(long offset, long length)>();
            using (var image = (Qcow2Image)DiskImage.Open(good))
            {
                var h = image.Header;
                regions.Add(((long)h.L1TableOffset, h.L1Size * 8L));
                regions.Add(((long)h.RefcountTableOffset, 64));
                regions.Add(((long)h.SnapshotsOffset, 64));
                foreach (var e in image.EnumerateL1()) if (e.Value != 0) regions.Add(((long)(e.Value & Qcow2Image.L1OffsetMask), 4096));
                foreach (var e in image.EnumerateRefcountTable()) if (e.Value != 0) regions.Add(((long)(e.Value & ~511UL), 512));
            }
            var original = File.ReadAllBytes(good);
            var random = new Random(int.Parse(Environment.GetEnvironmentVariable("QCOWPS_FUZZ_SEED") ?? "777"));
            for (int round = 0; round < int.Parse(Environment.GetEnvironmentVariable("QCOWPS_FUZZ_ROUNDS") ?? "400"); round++)
            {
                var bytes = (byte[])original.Clone();
                int changes = random.Next(1, 4);
                for (int c = 0; c < changes; c++)
                {
                    var (offset, length) = regions[random.Next(regions.Count)];
                    long at = offset + random.Next(0, (int)Math.Max(1, length / 8)) * 8;
                    ulong value = random.Next(4) switch
                    {
                        0 => (ulong)random.NextInt64(),                                     // anything
                        1 => (ulong)random.Next(0, 64) * 4096 | (random.Next(2) == 0 ? 0UL : 1UL << 63),  // a plausible cluster
                        2 => 1UL << random.Next(0, 64),                                    // one bit
                        _ => 0,                                                            // cleared
                    };
                    if (at + 8 <= bytes.Length) System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan((int)at), value);
                }
                string path = dir.File($"m{round}.qcow2");
                File.WriteAllBytes(path, bytes);
                var task = Task.Run(() =>
                {
                    void Quietly(Action action)
                    {
                        try { action(); } catch (QcowException) { }
                    }
                    void QuietlyConverting(Action action)
                    {
                        try { action(); }
                        catch (QcowException e)
                        {
                            for (var inner = e.InnerException; inner != null; inner = inner.InnerException)
                                if (!(inner is QcowException || inner is IOException))
                                    throw new InvalidOperationException($"conversion failed with {inner.GetType().Name}", inner);
                        }
                    }
                    Quietly(() =>
                    {
                        using var disk = (Qcow2Image)DiskImage.Open(path);
                        var buffer = new byte[1 << 20];
                        for (long pos = 0; pos < disk.Length; pos += buffer.Length)
                            Quietly(() => disk.Read(pos, buffer, 0, (int)Math.Min(buffer.Length, disk.Length - pos)));
                        Quietly(() => { foreach (var _ in Operations.ImageInspector.Clusters(disk, 0, disk.Length, false)) { } });
                        foreach (var kind in new[] { QcowTableKind.L1, QcowTableKind.L2, QcowTableKind.RefcountTable, QcowTableKind.RefcountBlock })
                            Quietly(() => { foreach (var _ in Operations.ImageInspector.Table(disk, kind, null, false)) { } });
                        Quietly(() => disk.Check());
                        foreach (var s in disk.Snapshots) Quietly(() => { using var v = disk.OpenSnapshot(s.Id); v.Read(0, buffer, 0, 65536); });
                        // Conversion runs the image through reader and worker threads, which report failures
                        // as QcowExceptions: what they wrap must be a QcowException or an I/O error, never a bug.
                        QuietlyConverting(() => Operations.ImageConverter.Convert(disk, dir.File($"c{round}.out"), new Operations.ConvertOptions
                        {
                            Overwrite = true, Compress = round % 2 == 0,
                            DestinationFormat = round % 3 == 0 ? ImageFormat.Raw : ImageFormat.Qcow2,
                        }));
                        Quietly(() => Operations.ImageComparer.Compare(disk, disk, all: true, strict: true).ToList());
                    });
                    Quietly(() =>
                    {
                        using var disk = (Qcow2Image)DiskImage.Open(path, new OpenOptions { Writable = true, AllowCorrupt = true, RepairDirty = false });
                        disk.Check(Qcow2RepairMode.All);
                    });
                    Quietly(() =>
                    {
                        using var disk = DiskImage.Open(path, new OpenOptions { Writable = true });
                        disk.Write(4096 * 7, new byte[9000], 0, 9000);
                        disk.WriteZeroes(1 << 20, 65536);
                        ((Qcow2Image)disk).CreateSnapshot("fuzz");
                    });
                });
                Assert.True(task.Wait(TimeSpan.FromSeconds(30)), $"round {round} hung");
                if (task.IsFaulted) throw new Xunit.Sdk.XunitException($"round {round}: {task.Exception.InnerException}");
                File.Delete(path);
                File.Delete(dir.File($"c{round}.out"));
            }
        }
    }
}
