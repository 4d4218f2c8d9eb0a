using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using QcowPS.Engine.Qcow2;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace QcowPS.Engine.Tests
{
    /// <summary>
    /// A workload is run once to count its host writes and flushes, then again failing at each of them
    /// in turn (the wider workloads at evenly spread sampled points; QCOWPS_FAULT_POINTS=all for every
    /// one, or a number for that many). After every failure: the image opens; qemu-img check finds no
    /// corruption; any leaks are removed by our leak repair (Repair-QcowImage -Leaks) after which
    /// qemu-img check is clean; qemu-img reads every granule (cluster, or subcluster with extended L2)
    /// as its old or its new contents (CrashRecorder); and qemu-img reads every snapshot back exactly.
    /// </summary>
    public class FaultInjectionTests
    {
        private readonly ITestOutputHelper _output;
        public FaultInjectionTests(ITestOutputHelper output) { _output = output; }

        private const long Size = 2L << 20;
        private const string PointsVariable = "QCOWPS_FAULT_POINTS";
        private const int DefaultSampledPoints = 16;

        private sealed class Scenario
        {
            public Qcow2CreateOptions Create;
            /// <summary>Makes the pristine image instead of Create (for images QEMU writes).</summary>
            public Action<TempDir, string> Prepare;
            public long Capacity = Size;
            public int Granule;
            public Action<Qcow2Image, CrashRecorder> Body;
            /// <summary>Proves the run without a failure did what the scenario is about (its premise).</summary>
            public Action<string> Premise;
        }

        /// <summary>Random writes and zeroing with a flush every sixth; an optional snapshot mid-way. Deterministic.</summary>
        private static Action<Qcow2Image, CrashRecorder> RandomWrites(int seed, int writes, bool withSnapshot, long span = Size, int maxLength = 200_000)
        {
            return (disk, recorder) =>
            {
                var random = new Random(seed);
                for (int i = 0; i < writes; i++)
                {
                    long length = random.Next(3) switch { 0 => random.Next(1, 3000), 1 => 65536, _ => random.Next(1, maxLength) };
                    long offset = random.NextInt64(0, span - length);
                    if (random.Next(5) == 0) recorder.Zero(disk, offset, length);
                    else
                    {
                        var data = new byte[length];
                        Array.Fill(data, (byte)(i + 1));
                        recorder.Write(disk, offset, data);
                    }
                    if (i % 6 == 5) recorder.Flush(disk);
                    if (withSnapshot && i == 12) recorder.CreateSnapshot(disk, "mid");
                }
            };
        }

        private static Scenario Original(int variant, bool withSnapshot, bool lazy)
        {
            var scenario = new Scenario
            {
                Create = new Qcow2CreateOptions { Size = Size, LazyRefcounts = lazy, ClusterSize = 4096, RefcountBits = variant == 1 ? 1 : 16 },
                Granule = 4096,
                Body = RandomWrites(4242, 24, withSnapshot),
            };
            if (variant == 2)
            {
                scenario.Create.Size = null;
                scenario.Create.BackingFile = "base.qcow2";
            }
            return scenario;
        }

        [SkippableTheory]
        [InlineData("plain", false, false, 0)]
        [InlineData("snapshot", true, false, 0)]
        [InlineData("lazy", false, true, 0)]
        [InlineData("refcount1-snapshot", true, false, 1)]
        [InlineData("backing", false, false, 2)]
        public void EveryFailurePointLeavesAConsistentImage(string name, bool withSnapshot, bool lazy, int variant)
        {
            Qemu.Require();
            using var dir = new TempDir();
            if (variant == 2)
            {
                Qemu.Img("create", "-f", "qcow2", dir.File("base.qcow2"), Size.ToString());
                Qemu.IoCommands(dir.File("base.qcow2"), "qcow2", "write -P 0x99 0 1M", "write -P 0x98 1M 1M");
            }
            RunAtFailurePoints(dir, name, Original(variant, withSnapshot, lazy), everyPoint: true);
        }

        public static IEnumerable<object[]> WiderScenarios() =>
            new[] { "cluster512", "cluster64k", "extl2", "compressed-cow", "snapshot-delete-apply", "resize", "refcount-table-growth", "leak-repair" }
                .Select(s => new object[] { s });

        private static Scenario Wider(string name)
        {
            switch (name)
            {
                case "cluster512":
                    return new Scenario { Create = new Qcow2CreateOptions { Size = Size, ClusterSize = 512 }, Granule = 512, Body = RandomWrites(512, 18, true, maxLength: 20_000) };
                case "cluster64k":
                    return new Scenario { Create = new Qcow2CreateOptions { Size = Size }, Granule = 65536, Body = RandomWrites(65536, 24, true) };
                case "extl2":
                    // 32 KiB clusters of 32 subclusters: a write touches single 1 KiB subclusters.
                    return new Scenario { Create = new Qcow2CreateOptions { Size = Size, ClusterSize = 32768, ExtendedL2 = true }, Granule = 1024, Body = RandomWrites(32, 24, true) };
                case "compressed-cow":
                    // Partial writes over zlib-compressed 4 KiB clusters: copy on write decompresses the old data.
                    return new Scenario
                    {
                        Prepare = (dir, path) =>
                        {
                            string raw = dir.File("mixed.raw");
                            TestImages.WriteMixedRaw(raw, Size, 5);
                            Qemu.Img("convert", "-c", "-O", "qcow2", "-o", "cluster_size=4096", raw, path);
                        },
                        Granule = 4096,
                        Body = RandomWrites(77, 24, false, maxLength: 9000),
                    };
                case "snapshot-delete-apply":
                    return new Scenario
                    {
                        Create = new Qcow2CreateOptions { Size = Size, ClusterSize = 4096 },
                        Granule = 4096,
                        Premise = path =>
                        {
                            var names = Qemu.Json("info", "--output=json", path).GetProperty("snapshots").EnumerateArray().Select(e => e.GetProperty("name").GetString());
                            Assert.Equal(new[] { "b" }, names);
                        },
                        Body = (disk, recorder) =>
                        {
                            RandomWrites(1, 8, false)(disk, recorder);
                            recorder.CreateSnapshot(disk, "a");
                            RandomWrites(2, 8, false)(disk, recorder);
                            recorder.CreateSnapshot(disk, "b");
                            RandomWrites(3, 8, false)(disk, recorder);
                            recorder.Flush(disk);
                            recorder.DeleteSnapshot(disk, "a");
                            RandomWrites(4, 4, false)(disk, recorder);
                            recorder.ApplySnapshot(disk, "b");
                            RandomWrites(5, 4, false)(disk, recorder);
                        },
                    };
                case "resize":
                    return new Scenario
                    {
                        Create = new Qcow2CreateOptions { Size = Size, ClusterSize = 4096 },
                        Capacity = 2 * Size + (Size / 2),
                        Granule = 4096,
                        Premise = path => Assert.True(FilePatch.ReadU32(path, L1SizeField) > 1, "the L1 table did not grow"),
                        Body = (disk, recorder) =>
                        {
                            RandomWrites(6, 8, false)(disk, recorder);
                            // 2 MiB to 5 MiB with 4 KiB clusters: the L1 table (512 entries of 2 MiB) grows.
                            recorder.Grow(disk, 2 * Size + (Size / 2));
                            RandomWrites(7, 12, false, span: 2 * Size + (Size / 2))(disk, recorder);
                        },
                    };
                case "refcount-table-growth":
                    // 512-byte clusters with 64-bit refcounts: one refcount-table cluster covers 64 blocks
                    // of 64 clusters, 2 MiB of host file; filling 3 MiB makes the table grow.
                    return new Scenario
                    {
                        Create = new Qcow2CreateOptions { Size = 3L << 20, ClusterSize = 512, RefcountBits = 64 },
                        Capacity = 3L << 20,
                        Granule = 512,
                        Premise = path => Assert.True(FilePatch.ReadU32(path, RefcountTableClustersField) > 1, "the refcount table did not grow"),
                        Body = (disk, recorder) =>
                        {
                            for (int i = 0; i < 6; i++)
                            {
                                var data = new byte[512 * 1024];
                                Array.Fill(data, (byte)(0x40 + i));
                                recorder.Write(disk, i * (long)data.Length, data);
                                if (i % 2 == 1) recorder.Flush(disk);
                            }
                        },
                    };
                case "leak-repair":
                    // A failure during the leak repair itself: the refcounts being fixed are only raised
                    // ones, so whatever is written, the image stays uncorrupted and the data intact.
                    return new Scenario
                    {
                        Prepare = (dir, path) =>
                        {
                            Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = Size, ClusterSize = 4096 });
                            Qemu.IoCommands(path, "qcow2", "write -P 0x5a 0 64k", "write -P 0x5b 1M 8k");
                            MakeLeaks(path, 4);
                            Assert.Equal(4, Qemu.Check(path).leaks);
                        },
                        Granule = 4096,
                        Body = (disk, recorder) => disk.Check(Qcow2RepairMode.Leaks),
                    };
                default: throw new ArgumentException(name);
            }
        }

        private const int RefcountTableOffsetField = 48;     // qcow2 header: refcount_table_offset (u64)
        private const int RefcountTableClustersField = 56;   // qcow2 header: refcount_table_clusters (u32)
        private const int L1SizeField = 36;                  // qcow2 header: l1_size (u32)

        /// <summary>Raises the refcounts of the first clusters of the file by one (to 2): leaks, nothing else.</summary>
        private static void MakeLeaks(string path, int count)
        {
            ulong table = FilePatch.ReadU64(path, RefcountTableOffsetField);
            ulong block = FilePatch.ReadU64(path, (long)table) & ~0x1FFUL;
            for (int cluster = 0; cluster < count; cluster++)
                FilePatch.Bytes(path, (long)block + 2 * cluster, new byte[] { 0, 2 });  // 16-bit refcounts
        }

        [SkippableTheory]
        [MemberData(nameof(WiderScenarios))]
        public void SampledFailurePointsOfWiderWorkloadsLeaveAConsistentImage(string name)
        {
            Qemu.Require();
            using var dir = new TempDir();
            RunAtFailurePoints(dir, name, Wider(name), everyPoint: false);
        }

        /// <summary>The failure points to try out of 1..events: all, or evenly spread including the first and last.</summary>
        private static IEnumerable<long> Points(long events, bool everyPoint)
        {
            string setting = Environment.GetEnvironmentVariable(PointsVariable);
            int sampled = DefaultSampledPoints;
            if (string.Equals(setting, "all", StringComparison.OrdinalIgnoreCase)) everyPoint = true;
            else if (!string.IsNullOrEmpty(setting)) sampled = int.Parse(setting);
            if (everyPoint || events <= sampled) return Enumerable.Range(1, (int)events).Select(i => (long)i);
            return Enumerable.Range(0, sampled).Select(k => 1 + k * (events - 1) / (sampled - 1)).Distinct();
        }

        private static CrashRecorder Execute(string path, FaultInjectingFile.Plan plan, Scenario scenario, byte[] initial, long length)
        {
            var recorder = new CrashRecorder(initial, length, scenario.Capacity);
            try
            {
                using var disk = (Qcow2Image)DiskImage.Open(path, new OpenOptions { Writable = true, WrapHostFile = f => new FaultInjectingFile(f, plan) });
                scenario.Body(disk, recorder);
            }
            catch (QcowException e) when (e.Kind == QcowErrorKind.IoError && plan.Failed)
            {
                return recorder;
            }
            if (plan.Failed) Assert.Fail($"the injected failure at event {plan.FailAt} was swallowed: the workload finished without an error");
            return recorder;
        }

        private void RunAtFailurePoints(TempDir dir, string name, Scenario scenario, bool everyPoint)
        {
            string pristine = dir.File("pristine.qcow2");
            if (scenario.Prepare != null) scenario.Prepare(dir, pristine);
            else Qcow2Creator.Create(pristine, scenario.Create);
            // The baseline comes from the oracle, not from the engine under test.
            byte[] baseline = QemuRead(dir, pristine);

            // Count the events of a clean run, which must also end clean.
            string work = dir.File("work.qcow2");
            File.Copy(pristine, work, true);
            var counting = new FaultInjectingFile.Plan();
            var finished = Execute(work, counting, scenario, baseline, baseline.Length);
            Assert.False(counting.Failed);
            Qemu.AssertClean(work);
            AssertSnapshot(finished.Model, QemuRead(dir, work), $"{name}: the run without a failure");
            scenario.Premise?.Invoke(work);
            long events = counting.Events;
            Assert.True(events >= 3, $"{name}: only {events} write/flush events");
            var points = Points(events, everyPoint).ToList();
            _output.WriteLine($"{name}: {events} write/flush events, failing at {points.Count} of them");

            int leaky = 0;
            foreach (long n in points)
            {
                File.Copy(pristine, work, true);
                var plan = new FaultInjectingFile.Plan { FailAt = n };
                var recorder = Execute(work, plan, scenario, baseline, baseline.Length);
                Assert.True(plan.Failed, $"{name}: event {n} was never reached");
                string at = $"{name}: failure at event {n} of {events}";

                // Reopen for writing, as a user would after the crash: a dirty image is repaired here.
                using (DiskImage.Open(work, new OpenOptions { Writable = true })) { }
                var (corruptions, leaks, _) = Qemu.Check(work);
                if (corruptions != 0)
                    Assert.Fail($"{at} left {corruptions} corruptions:\n{Qemu.TryRun("qemu-img", "check", work).stdout}");
                if (leaks != 0)
                {
                    leaky++;
                    using (var image = (Qcow2Image)DiskImage.Open(work, new OpenOptions { Writable = true }))
                        image.Check(Qcow2RepairMode.Leaks);
                }
                Qemu.AssertClean(work);

                string wrong = recorder.FindGranuleInNoState(QemuRead(dir, work), scenario.Granule);
                if (wrong != null) Assert.Fail($"{at}: {wrong}");
                foreach (var (snapshot, content) in recorder.Snapshots)
                {
                    var read = QemuRead(dir, work, snapshot);
                    if (read == null) Assert.Fail($"{at}: snapshot '{snapshot}' is gone");
                    AssertSnapshot(content, read, $"{at}: snapshot '{snapshot}'");
                }
                foreach (var (snapshot, content) in recorder.SnapshotsInDoubt)
                {
                    var read = QemuRead(dir, work, snapshot);
                    if (read != null) AssertSnapshot(content, read, $"{at}: snapshot '{snapshot}' (being created or deleted)");
                }
            }
            _output.WriteLine($"{name}: {leaky} of {points.Count} failures left leaks, which the leak repair removed");
        }

        private static void AssertSnapshot(byte[] expected, byte[] actual, string what)
        {
            int length = actual.Length;
            if (expected.AsSpan(0, length).SequenceEqual(actual) && expected.AsSpan(length).IndexOfAnyExcept((byte)0) < 0) return;
            int i = 0;
            while (i < length && expected[i] == actual[i]) i++;
            Assert.Fail($"{what} differs at guest offset 0x{i:X}");
        }

        /// <summary>The guest bytes as qemu-img reads them (null when the snapshot does not exist).</summary>
        private static byte[] QemuRead(TempDir dir, string path, string snapshot = null)
        {
            string raw = dir.File("read.raw");
            var args = new List<string> { "convert", "-O", "raw" };
            if (snapshot != null) { args.Add("-l"); args.Add("snapshot.name=" + snapshot); }
            args.Add(path);
            args.Add(raw);
            var (code, stdout, stderr) = Qemu.TryRun("qemu-img", args.ToArray());
            if (code != 0)
            {
                if (snapshot != null && (stderr + stdout).Contains("snapshot")) return null;
                throw new InvalidOperationException($"qemu-img {string.Join(" ", args)} failed ({code}): {stderr}{stdout}");
            }
            var bytes = File.ReadAllBytes(raw);
            File.Delete(raw);
            return bytes;
        }
    }
}
