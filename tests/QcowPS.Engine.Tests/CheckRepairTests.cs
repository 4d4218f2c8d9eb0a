using System;
using System.IO;
using System.Linq;
using QcowPS.Engine.Qcow2;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;

namespace QcowPS.Engine.Tests
{
    /// <summary>Images broken on purpose: our check counts what qemu-img check counts; our repair leaves qemu-img check clean.</summary>
    public class CheckRepairTests
    {
        private static (string path, long refblock, long l2, long l1) Make(TempDir dir, string name = "broken.qcow2")
        {
            string path = dir.File(name);
            Qemu.Img("create", "-f", "qcow2", path, "16M");
            Qemu.IoCommands(path, "qcow2", "write -P 0x11 0 192k", "write -P 0x22 4M 64k");
            using var image = (Qcow2Image)DiskImage.Open(path);
            long refblock = (long)(image.GetRefcountTable()[0] & ~511UL);
            long l1 = (long)image.Header.L1TableOffset;
            long l2 = (long)(image.GetL1Table()[0] & Qcow2Image.L1OffsetMask);
            return (path, refblock, l2, l1);
        }

        private static void SetRefcount16(string path, long refblock, long cluster, ushort value) =>
            FilePatch.Bytes(path, refblock + cluster * 2, new[] { (byte)(value >> 8), (byte)value });

        private static QcowCheckResult OurCheck(string path, Qcow2RepairMode mode = Qcow2RepairMode.None)
        {
            using var image = (Qcow2Image)DiskImage.Open(path, new OpenOptions { Writable = mode != Qcow2RepairMode.None, AllowCorrupt = true, RepairDirty = false });
            return image.Check(mode);
        }

        private static void AssertSameCounts(string path)
        {
            var (corruptions, leaks, report) = Qemu.Check(path);
            var ours = OurCheck(path);
            string detail = string.Join("\n", ours.Problems) + "\n--- qemu ---\n" + Qemu.TryRun("qemu-img", "check", path).stderr;
            Assert.True(corruptions == ours.Corruptions, $"corruptions: qemu {corruptions}, ours {ours.Corruptions}\n{detail}");
            Assert.True(leaks == ours.Leaks, $"leaks: qemu {leaks}, ours {ours.Leaks}\n{detail}");
            void Same(string name, long actual)
            {
                long expected = report.TryGetProperty(name, out var v) ? v.GetInt64() : 0;
                Assert.True(expected == actual, $"{Path.GetFileName(path)} {name}: qemu {expected}, ours {actual}\n{detail}");
            }
            Same("allocated-clusters", ours.AllocatedClusters);
            Same("total-clusters", ours.TotalClusters);
            Same("fragmented-clusters", ours.FragmentedClusters);
            Same("compressed-clusters", ours.CompressedClusters);
            Same("image-end-offset", ours.ImageEndOffset);
            Same("check-errors", ours.CheckErrors);
        }

        private static void RepairAndVerify(TempDir dir, string path, byte[] expectedRaw, Qcow2RepairMode mode = Qcow2RepairMode.All)
        {
            var result = OurCheck(path, mode);
            Assert.True(result.LeaksFixed + result.CorruptionsFixed > 0, "the repair fixed nothing");
            Qemu.AssertClean(path);
            if (expectedRaw != null)
            {
                using var disk = DiskImage.Open(path);
                var actual = new byte[disk.Length];
                disk.Read(0, actual, 0, actual.Length);
                Assert.True(expectedRaw.AsSpan().SequenceEqual(actual), "the repair changed guest data");
            }
        }

        private static byte[] GuestBytes(string path)
        {
            using var disk = DiskImage.Open(path);
            var bytes = new byte[disk.Length];
            disk.Read(0, bytes, 0, bytes.Length);
            return bytes;
        }

        [SkippableFact]
        public void CleanImagesAgreeOnEveryCount()
        {
            Qemu.Require();
            using var dir = new TempDir();
            foreach (var kind in new[] { "v2", "zlib", "extl2", "snapshots", "chain3", "refcount1", "v3-512", "datafile" })
            {
                var image = TestImages.Make(dir, kind);
                AssertSameCounts(image.Path);
                Assert.True(OurCheck(image.Path).IsConsistent, kind);
            }
        }

        [SkippableFact]
        public void CheckReportsProgressOverEveryL1EntryOfTheImageAndItsSnapshots()
        {
            Qemu.Require();
            using var dir = new TempDir();
            var image = TestImages.Make(dir, "snapshots");
            using var disk = (Qcow2Image)DiskImage.Open(image.Path);
            long expected = disk.Header.L1Size + disk.Snapshots.Sum(s => (long)s.L1Size);
            var calls = new System.Collections.Generic.List<(long done, long total)>();
            Assert.True(disk.Check(Qcow2RepairMode.None, (done, total) => calls.Add((done, total))).IsConsistent);
            Assert.NotEmpty(calls);
            Assert.All(calls, c => Assert.Equal(expected, c.total));
            Assert.Equal(Enumerable.Range(1, calls.Count).Select(i => (long)i), calls.Select(c => c.done));
            Assert.Equal(expected, calls[^1].done);
        }

        [SkippableFact]
        public void LeakedCluster()
        {
            Qemu.Require();
            using var dir = new TempDir();
            var (path, refblock, _, _) = Make(dir);
            long clusters = new FileInfo(path).Length / 65536;
            using (var f = new FileStream(path, FileMode.Open)) f.SetLength((clusters + 2) * 65536);
            SetRefcount16(path, refblock, clusters + 1, 1);
            Assert.Equal(1, Qemu.Check(path).leaks);
            AssertSameCounts(path);
            var before = GuestBytes(path);
            RepairAndVerify(dir, path, before, Qcow2RepairMode.Leaks);
        }

        [SkippableFact]
        public void RefcountTooHigh()
        {
            Qemu.Require();
            using var dir = new TempDir();
            var (path, refblock, l2, _) = Make(dir);
            long data = (long)(FilePatch.ReadU64(path, l2) & L2Entry.OffsetMask) / 65536;
            SetRefcount16(path, refblock, data, 2);
            AssertSameCounts(path);
            var before = GuestBytes(path);
            RepairAndVerify(dir, path, before);
        }

        [SkippableFact]
        public void RefcountTooLow()
        {
            Qemu.Require();
            using var dir = new TempDir();
            var (path, refblock, l2, _) = Make(dir);
            long data = (long)(FilePatch.ReadU64(path, l2 + 8) & L2Entry.OffsetMask) / 65536;
            SetRefcount16(path, refblock, data, 0);
            Assert.True(Qemu.Check(path).corruptions > 0);
            AssertSameCounts(path);
            var before = GuestBytes(path);
            RepairAndVerify(dir, path, before);
        }

        [SkippableFact]
        public void L2EntryPointingIntoMetadata()
        {
            Qemu.Require();
            using var dir = new TempDir();
            var (path, _, l2, l1) = Make(dir);
            FilePatch.U64(path, l2 + 16, (ulong)l1 | L2Entry.CopiedFlag);
            Assert.True(Qemu.Check(path).corruptions > 0);
            AssertSameCounts(path);
            RepairAndVerify(dir, path, null);
        }

        [SkippableFact]
        public void OverlappingClusters()
        {
            Qemu.Require();
            using var dir = new TempDir();
            var (path, _, l2, _) = Make(dir);
            ulong first = FilePatch.ReadU64(path, l2);
            FilePatch.U64(path, l2 + 8, first);  // guest clusters 0 and 1 share one host cluster
            Assert.True(Qemu.Check(path).corruptions > 0);
            AssertSameCounts(path);
            RepairAndVerify(dir, path, null);
            // After the repair the shared cluster is copied on write: writing one guest cluster leaves the other.
            using (var disk = DiskImage.Open(path, new OpenOptions { Writable = true }))
                disk.Write(0, new byte[] { 0xEE }, 0, 1);
            Assert.Equal(0, Qemu.Check(path).leaks);
            Qemu.IoCommands(path, "qcow2", "read -P 0xee 0 1", "read -P 0x11 65536 65536");
        }

        [SkippableFact]
        public void RefcountTableEntryPointingOutsideTheImageIsRebuilt()
        {
            Qemu.Require();
            using var dir = new TempDir();
            var (path, _, _, _) = Make(dir);
            using (var image = (Qcow2Image)DiskImage.Open(path))
            {
                long rt = (long)image.Header.RefcountTableOffset;
                image.Dispose();
                FilePatch.U64(path, rt + 8, 0x4000_0000);  // a second refcount block far past the end
            }
            var (corruptions, _, _) = Qemu.Check(path);
            Assert.True(corruptions > 0);
            AssertSameCounts(path);
            var before = GuestBytes(path);
            RepairAndVerify(dir, path, before);
        }

        [SkippableFact]
        public void CorruptBitOpensReadOnlyAndRepairClearsIt()
        {
            Qemu.Require();
            using var dir = new TempDir();
            var (path, refblock, l2, _) = Make(dir);
            FilePatch.U64(path, Qcow2HeaderLayout.IncompatibleFeatures, 2);  // incompatible_features: corrupt
            using (var disk = DiskImage.Open(path)) Assert.Equal(16 << 20, disk.Length);
            var e = Assert.Throws<QcowException>(() => DiskImage.Open(path, new OpenOptions { Writable = true }));
            Assert.Equal(QcowErrorKind.ReadOnly, e.Kind);
            Assert.Contains("corrupt", e.Message);
            OurCheck(path, Qcow2RepairMode.All);
            Assert.Equal(0UL, FilePatch.ReadU64(path, Qcow2HeaderLayout.IncompatibleFeatures) & 2);
            using (var disk = DiskImage.Open(path, new OpenOptions { Writable = true })) disk.Write(0, new byte[] { 1 }, 0, 1);
            Qemu.AssertClean(path);
        }

        [SkippableFact]
        public void DirtyLazyRefcountImageIsRepairedOnOpen()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = dir.File("lazy.qcow2");
            Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = 8 << 20, LazyRefcounts = true });
            using (var disk = DiskImage.Open(path, new OpenOptions { Writable = true }))
            {
                disk.Write(0, new byte[70000], 0, 70000);
                disk.Flush();
                // While open with unflushed lazy refcounts, the dirty bit is set on disk.
                Assert.NotEqual(0UL, FilePatch.ReadU64(path, Qcow2HeaderLayout.IncompatibleFeatures) & 1);
            }
            Assert.Equal(0UL, FilePatch.ReadU64(path, Qcow2HeaderLayout.IncompatibleFeatures) & 1);

            // Simulate a crash with refcounts not written: drop the refcount of an allocated data cluster and set dirty.
            using (var image = (Qcow2Image)DiskImage.Open(path))
            {
                long refblock = (long)(image.GetRefcountTable()[0] & ~511UL);
                long l2 = (long)(image.GetL1Table()[0] & Qcow2Image.L1OffsetMask);
                long data = (long)(FilePatch.ReadU64(path, l2) & L2Entry.OffsetMask) / 65536;
                image.Dispose();
                SetRefcount16(path, refblock, data, 0);
            }
            FilePatch.U64(path, Qcow2HeaderLayout.IncompatibleFeatures, 1);
            Assert.True(Qemu.Check(path).corruptions > 0);
            using (DiskImage.Open(path, new OpenOptions { Writable = true })) { }
            Qemu.AssertClean(path);
            Assert.Equal(0UL, FilePatch.ReadU64(path, Qcow2HeaderLayout.IncompatibleFeatures) & 1);
        }
    }
}
