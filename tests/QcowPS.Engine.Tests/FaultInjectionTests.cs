using System;
using System.Collections.Generic;
using System.IO;
using QcowPS.Engine.Qcow2;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace QcowPS.Engine.Tests
{
    /// <summary>
    /// A workload is run once to count its writes and flushes, then again failing at each of them in
    /// turn. After every failure the image opens, qemu-img check finds no corruption (leaks are allowed),
    /// and every byte flushed before the failure reads back.
    /// </summary>
    public class FaultInjectionTests
    {
        private readonly ITestOutputHelper _output;
        public FaultInjectionTests(ITestOutputHelper output) { _output = output; }

        private const long Size = 2L << 20;

        private sealed class Run
        {
            public byte[] FlushedModel;                    // the disk as of the last successful flush
            public List<(long offset, long length)> Unflushed = new List<(long, long)>();
            public bool Failed;
        }

        /// <summary>The workload: writes, zeroing, flushes, a snapshot; deterministic for a seed.</summary>
        private static Run Execute(string path, FaultInjectingFile.Plan plan, bool withSnapshot, byte[] initial)
        {
            var run = new Run { FlushedModel = (byte[])initial.Clone() };
            var model = (byte[])initial.Clone();
            var random = new Random(4242);
            try
            {
                using var disk = (Qcow2Image)DiskImage.Open(path, new OpenOptions { Writable = true, WrapHostFile = f => new FaultInjectingFile(f, plan) });
                for (int i = 0; i < 24; i++)
                {
                    long length = random.Next(3) switch { 0 => random.Next(1, 3000), 1 => 65536, _ => random.Next(1, 200_000) };
                    long offset = random.NextInt64(0, Size - length);
                    run.Unflushed.Add((offset, length));  // before the write: a failure inside it may leave it half done
                    if (random.Next(5) == 0)
                    {
                        disk.WriteZeroes(offset, length);
                        Array.Clear(model, (int)offset, (int)length);
                    }
                    else
                    {
                        var data = new byte[length];
                        Array.Fill(data, (byte)(i + 1));
                        disk.Write(offset, data, 0, data.Length);
                        Array.Copy(data, 0, model, offset, length);
                    }
                    if (i % 6 == 5)
                    {
                        disk.Flush();
                        run.FlushedModel = (byte[])model.Clone();
                        run.Unflushed.Clear();
                    }
                    if (withSnapshot && i == 12)
                    {
                        disk.CreateSnapshot("mid");
                        run.FlushedModel = (byte[])model.Clone();
                        run.Unflushed.Clear();
                    }
                }
            }
            catch (QcowException e) when (e.Kind == QcowErrorKind.IoError && plan.Failed)
            {
                run.Failed = true;
            }
            return run;
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
            string pristine = dir.File("pristine.qcow2");
            var options = new Qcow2CreateOptions { Size = Size, LazyRefcounts = lazy, ClusterSize = 4096 };
            if (variant == 1) options.RefcountBits = 1;
            if (variant == 2)
            {
                Qemu.Img("create", "-f", "qcow2", dir.File("base.qcow2"), Size.ToString());
                Qemu.IoCommands(dir.File("base.qcow2"), "qcow2", "write -P 0x99 0 2M");
                options.BackingFile = "base.qcow2";
                options.Size = null;
            }
            Qcow2Creator.Create(pristine, options);
            byte[] baseline = variant == 2 ? ReadAll(pristine) : new byte[Size];

            // Count the events of a clean run.
            string work = dir.File("work.qcow2");
            File.Copy(pristine, work, true);
            var counting = new FaultInjectingFile.Plan();
            var clean = Execute(work, counting, withSnapshot, baseline);
            Assert.False(clean.Failed);
            long events = counting.Events;
            _output.WriteLine($"{name}: {events} write/flush events");
            Assert.True(events > 20);

            for (long n = 1; n <= events; n++)
            {
                File.Copy(pristine, work, true);
                var plan = new FaultInjectingFile.Plan { FailAt = n };
                var run = Execute(work, plan, withSnapshot, baseline);
                Assert.True(run.Failed, $"event {n} did not fail the run");

                // Reopen for writing, as a user would after the crash: a dirty image is repaired here.
                using (DiskImage.Open(work, new OpenOptions { Writable = true })) { }
                var (corruptions, _, _) = Qemu.Check(work);
                if (corruptions != 0)
                    Assert.Fail($"{name}: failure at event {n} of {events} left {corruptions} corruptions:\n{Qemu.TryRun("qemu-img", "check", work).stderr}");

                using var disk = DiskImage.Open(work);
                var actual = new byte[Size];
                disk.Read(0, actual, 0, actual.Length);
                var expected = (byte[])run.FlushedModel.Clone();
                foreach (var (offset, length) in run.Unflushed)
                    Array.Copy(actual, offset, expected, offset, length);  // unflushed ranges may hold old or new data
                if (!expected.AsSpan().SequenceEqual(actual))
                {
                    int i = 0;
                    while (expected[i] == actual[i]) i++;
                    Assert.Fail($"{name}: failure at event {n}: flushed data lost at guest offset 0x{i:X}");
                }
            }
        }

        private static byte[] ReadAll(string path)
        {
            using var disk = DiskImage.Open(path);
            var bytes = new byte[disk.Length];
            disk.Read(0, bytes, 0, bytes.Length);
            return bytes;
        }
    }
}
