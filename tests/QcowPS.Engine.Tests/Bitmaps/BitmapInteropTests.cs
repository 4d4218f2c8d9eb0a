using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using QcowPS.Engine.Qcow2;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;

namespace QcowPS.Engine.Tests.Bitmaps
{
    /// <summary>Persistent bitmaps against QEMU: read what it made, keep them exact through our writes, make ones it accepts.</summary>
    public class BitmapInteropTests
    {
        // Not a multiple of any granularity: the last run ends inside a granule.
        private const long Size = (9L << 20) + 3 * 512;

        private static List<(long Offset, long Length)> RandomWrites(int seed, int count, long size)
        {
            var random = new Random(seed);
            var writes = new List<(long, long)>();
            for (int i = 0; i < count; i++)
            {
                long length = random.Next(3) switch { 0 => random.Next(1, 5000), 1 => 65536, _ => random.Next(1, 300_000) };
                long offset = random.NextInt64(0, size - length);
                if (random.Next(4) == 0) offset &= ~511L;
                writes.Add((offset, length));
            }
            return writes;
        }

        private static void QemuWrites(string image, IEnumerable<(long Offset, long Length)> writes) =>
            Qemu.IoCommands(image, "qcow2", writes.Select(w => $"write -P 0x5a {w.Offset} {w.Length}").ToArray());

        [SkippableTheory]
        [InlineData(512, 4096)]
        [InlineData(4096, 65536)]
        [InlineData(65536, 65536)]
        [InlineData(1 << 20, 512)]
        [InlineData(65536, 2 << 20)]
        public void BitmapsQemuMadeReadAsQemuReportsThem(int granularity, int clusterSize)
        {
            DirtyMap.RequireNbdTools();
            using var dir = new TempDir();
            string image = dir.File("q.qcow2");
            Qemu.Img("create", "-f", "qcow2", "-o", $"cluster_size={clusterSize}", image, Size.ToString());
            Qemu.Img("bitmap", "--add", "-g", granularity.ToString(), image, "on");
            Qemu.Img("bitmap", "--add", "-g", granularity.ToString(), image, "off");
            Qemu.Img("bitmap", "--add", image, "empty");
            var first = RandomWrites(granularity, 12, Size);
            QemuWrites(image, first);
            Qemu.Img("bitmap", "--disable", image, "off");
            Qemu.Img("bitmap", "--clear", image, "empty");
            QemuWrites(image, RandomWrites(granularity + 1, 12, Size));

            using (var disk = (Qcow2Image)DiskImage.Open(image, new OpenOptions()))
            {
                var names = disk.Bitmaps.Select(b => b.Name).ToArray();
                Assert.Equal(new[] { "on", "off", "empty" }, names);
                Assert.True(disk.FindBitmap("on").Enabled);
                Assert.False(disk.FindBitmap("off").Enabled);
                Assert.Equal(granularity, disk.FindBitmap("off").Granularity);
                Assert.False(disk.FindBitmap("on").InUse);
            }
            foreach (var name in new[] { "on", "off", "empty" })
                DirtyMap.Equal(DirtyMap.FromQemu(image, name), DirtyMap.FromEngine(image, name), $"bitmap '{name}' at granularity {granularity}");
            // The disabled one holds exactly the first writes (an oracle independent of both readers).
            DirtyMap.Equal(DirtyMap.Model(Size, granularity, first), DirtyMap.FromEngine(image, "off"), "disabled bitmap vs model");
        }

        [SkippableFact]
        public void ABitmapLeftInUseByAKilledWriterIsStaleAndRefused()
        {
            DirtyMap.RequireNbdTools();
            using var dir = new TempDir();
            string image = dir.File("k.qcow2");
            Qemu.Img("create", "-f", "qcow2", image, Size.ToString());
            Qemu.Img("bitmap", "--add", image, "b0");
            var psi = new ProcessStartInfo("qemu-io", $"-f qcow2 {image}") { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
            using (var p = Process.Start(psi))
            {
                p.StandardInput.WriteLine("write -P 1 0 64k");
                p.StandardInput.Flush();
                string line;
                while ((line = p.StandardOutput.ReadLine()) != null && !line.Contains("wrote")) { }
                p.Kill();
                p.WaitForExit();
            }
            Assert.Contains("in-use", DirtyMap.QemuInfo(image)["b0"].Flags);
            var (code, _, _) = Qemu.TryRun("/usr/bin/nbdinfo", "--map=qemu:dirty-bitmap:b0", "--", "[", "/usr/bin/qemu-nbd", "-r", "-f", "qcow2", "-B", "b0", image, "]");
            Assert.NotEqual(0, code);  // QEMU refuses to export it too

            using (var disk = (Qcow2Image)DiskImage.Open(image, new OpenOptions { Writable = true }))
            {
                var b0 = disk.FindBitmap("b0");
                Assert.True(b0.InUse);
                Assert.Null(disk.GetBitmapDirtyBytes("b0"));
                var e = Assert.Throws<QcowException>(() => disk.GetBitmapExtents("b0"));
                Assert.Equal(QcowErrorKind.BitmapInUse, e.Kind);
                Assert.Throws<QcowException>(() => disk.ClearBitmap("b0"));
                disk.Write(0, new byte[512], 0, 512);  // a write leaves it in use (stale), never "fixed"
            }
            Assert.Contains("in-use", DirtyMap.QemuInfo(image)["b0"].Flags);
            Qemu.AssertClean(image);
            using (var disk = (Qcow2Image)DiskImage.Open(image, new OpenOptions { Writable = true })) disk.RemoveBitmap("b0");
            Assert.Empty(DirtyMap.QemuInfo(image));
            Qemu.AssertClean(image);
        }

        [SkippableTheory]
        [InlineData(1, false)]
        [InlineData(2, true)]
        [InlineData(3, false)]
        public void OurWritesKeepBitmapsExactAsQemuReadsThem(int seed, bool extendedL2)
        {
            DirtyMap.RequireNbdTools();
            using var dir = new TempDir();
            string image = dir.File("w.qcow2");
            Qemu.Img("create", "-f", "qcow2", "-o", $"cluster_size=65536,extended_l2={(extendedL2 ? "on" : "off")}", image, Size.ToString());
            Qemu.Img("bitmap", "--add", "-g", "512", image, "fine");
            Qemu.Img("bitmap", "--add", "-g", "1M", image, "coarse");
            Qemu.Img("bitmap", "--add", image, "frozen");
            var before = RandomWrites(seed * 100, 6, Size);
            QemuWrites(image, before);
            Qemu.Img("bitmap", "--disable", image, "frozen");

            var ours = RandomWrites(seed, 30, Size);
            var random = new Random(seed);
            using (var disk = (Qcow2Image)DiskImage.Open(image, new OpenOptions { Writable = true }))
            {
                // While open for writing, the enabled bitmaps are marked in use on disk.
                disk.Write(0, new byte[1], 0, 1);
                Assert.Contains("in-use", DirtyMap.QemuInfo(image)["fine"].Flags);
                Assert.DoesNotContain("in-use", DirtyMap.QemuInfo(image)["frozen"].Flags);
                foreach (var (offset, length) in ours)
                {
                    if (random.Next(4) == 0) disk.WriteZeroes(offset, length);
                    else
                    {
                        var data = new byte[length];
                        random.NextBytes(data);
                        disk.Write(offset, data, 0, data.Length);
                    }
                }
            }
            ours.Insert(0, (0, 1));
            var info = DirtyMap.QemuInfo(image);
            Assert.All(info.Values, b => Assert.DoesNotContain("in-use", b.Flags));
            Qemu.AssertClean(image);
            var all = before.Concat(ours).ToList();
            DirtyMap.Equal(DirtyMap.Model(Size, 512, all), DirtyMap.FromQemu(image, "fine"), "fine");
            DirtyMap.Equal(DirtyMap.Model(Size, 1 << 20, all), DirtyMap.FromQemu(image, "coarse"), "coarse");
            DirtyMap.Equal(DirtyMap.Model(Size, 65536, before), DirtyMap.FromQemu(image, "frozen"), "frozen (disabled)");
        }

        [SkippableFact]
        public void BitmapsWeMakeAreAcceptedByQemu()
        {
            DirtyMap.RequireNbdTools();
            using var dir = new TempDir();
            string image = dir.File("m.qcow2");
            Qcow2Creator.Create(image, new Qcow2CreateOptions { Size = Size });
            var w1 = RandomWrites(7, 10, Size);
            var w2 = RandomWrites(8, 10, Size);
            using (var disk = (Qcow2Image)DiskImage.Open(image, new OpenOptions { Writable = true }))
            {
                disk.AddBitmap("a", 12);
                disk.AddBitmap("b", 16, enabled: false);
                disk.AddBitmap("c");
                foreach (var (o, l) in w1) disk.Write(o, new byte[l], 0, (int)l);
                disk.SetBitmapEnabled("a", false);
                foreach (var (o, l) in w2) disk.Write(o, new byte[l], 0, (int)l);
                disk.MergeBitmap("b", "a");
                disk.ClearBitmap("c");
                var e = Assert.Throws<QcowException>(() => disk.AddBitmap("a"));
                Assert.Equal(QcowErrorKind.BitmapExists, e.Kind);
                Assert.Throws<QcowException>(() => disk.AddBitmap("x", 8));
                Assert.Throws<QcowException>(() => disk.AddBitmap(new string('n', 1024)));
            }
            Qemu.AssertClean(image);
            var info = DirtyMap.QemuInfo(image);
            Assert.Equal(new[] { "a", "b", "c" }, info.Keys.ToArray());
            Assert.Empty(info["a"].Flags);
            Assert.Equal(4096, info["a"].Granularity);
            Assert.Equal(new[] { "auto" }, info["c"].Flags);
            DirtyMap.Equal(DirtyMap.Model(Size, 4096, w1), DirtyMap.FromQemu(image, "a"), "a");
            DirtyMap.Equal(DirtyMap.Model(Size, 65536, w1), DirtyMap.FromQemu(image, "b"), "b (merged from a)");
            DirtyMap.Equal(DirtyMap.Model(Size, 65536, Array.Empty<(long, long)>()), DirtyMap.FromQemu(image, "c"), "c (cleared)");

            // QEMU works on them: merges, writes through them, copies them.
            Qemu.Img("bitmap", "--merge", "a", image, "c");
            QemuWrites(image, new[] { (100000L, 5000L) });
            Qemu.AssertClean(image);
            DirtyMap.Equal(DirtyMap.FromQemu(image, "c"), DirtyMap.FromEngine(image, "c"), "c after qemu's merge and write");
            string copy = dir.File("copy.qcow2");
            Qemu.Img("convert", "-f", "qcow2", "-O", "qcow2", "--bitmaps", image, copy);
            Assert.Equal(3, DirtyMap.QemuInfo(copy).Count);
            using (var disk = (Qcow2Image)DiskImage.Open(image, new OpenOptions { Writable = true }))
                foreach (var n in new[] { "a", "b", "c" }) disk.RemoveBitmap(n);
            Assert.Empty(DirtyMap.QemuInfo(image));
            Qemu.AssertClean(image);
        }

        [SkippableFact]
        public void ResizeFollowsQemu()
        {
            DirtyMap.RequireNbdTools();
            using var dir = new TempDir();
            string theirs = dir.File("theirs.qcow2"), ours = dir.File("ours.qcow2");
            Qemu.Img("create", "-f", "qcow2", theirs, Size.ToString());
            Qemu.Img("bitmap", "--add", "-g", "4096", theirs, "b");
            QemuWrites(theirs, RandomWrites(5, 10, Size));
            File.Copy(theirs, ours);

            long grown = Size * 2 + 512, shrunk = ((Size / 2) & ~511L) + 1536;
            Qemu.Img("resize", theirs, grown.ToString());
            QemuWrites(theirs, new[] { (grown - 70000, 4096L) });
            Qemu.Img("resize", "--shrink", theirs, shrunk.ToString());
            using (var disk = (Qcow2Image)DiskImage.Open(ours, new OpenOptions { Writable = true })) disk.Resize(grown, false);
            using (var disk = (Qcow2Image)DiskImage.Open(ours, new OpenOptions { Writable = true })) disk.Write(grown - 70000, new byte[4096], 0, 4096);
            using (var disk = (Qcow2Image)DiskImage.Open(ours, new OpenOptions { Writable = true })) disk.Resize(shrunk, true);
            Qemu.AssertClean(ours);
            DirtyMap.Equal(DirtyMap.FromQemu(theirs, "b"), DirtyMap.FromQemu(ours, "b"), "after grow, write and shrink");
        }

        [SkippableFact]
        public void ApplyingASnapshotIsRefusedWhileBitmapsExistAsInQemu()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string image = dir.File("s.qcow2");
            Qemu.Img("create", "-f", "qcow2", image, "1M");
            Qemu.Img("snapshot", "-c", "s1", image);
            Qemu.Img("bitmap", "--add", image, "b0");
            Assert.NotEqual(0, Qemu.TryRun("qemu-img", "snapshot", "-a", "s1", image).exitCode);
            using var disk = (Qcow2Image)DiskImage.Open(image, new OpenOptions { Writable = true });
            var e = Assert.Throws<QcowException>(() => disk.ApplySnapshot("s1"));
            Assert.Contains("bitmaps", e.Message);
        }
    }
}
