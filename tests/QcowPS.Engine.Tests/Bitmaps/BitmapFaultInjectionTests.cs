using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using QcowPS.Engine.Qcow2;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace QcowPS.Engine.Tests.Bitmaps
{
    /// <summary>
    /// A bitmap-keeping workload fails at each of its writes and flushes in turn. After every failure
    /// the image has no corruption, the disabled bitmap is untouched, and the enabled one is either
    /// marked in use (known stale) or exact: as before the workload when no guest data changed, or
    /// covering every write of the completed workload.
    /// </summary>
    public class BitmapFaultInjectionTests
    {
        private readonly ITestOutputHelper _output;
        public BitmapFaultInjectionTests(ITestOutputHelper output) { _output = output; }

        private const long Size = 2L << 20;
        private const int Granularity = 4096;

        private static List<(long Offset, long Length)> Execute(string path, FaultInjectingFile.Plan plan, bool addOwn)
        {
            var random = new Random(77);
            var writes = new List<(long, long)>();
            try
            {
                using var disk = (Qcow2Image)DiskImage.Open(path, new OpenOptions { Writable = true, WrapHostFile = f => new FaultInjectingFile(f, plan) });
                if (addOwn) disk.AddBitmap("ours", 13);
                for (int i = 0; i < 12; i++)
                {
                    long length = random.Next(2) == 0 ? random.Next(1, 9000) : random.Next(1, 150_000);
                    long offset = random.NextInt64(0, Size - length);
                    writes.Add((offset, length));
                    if (random.Next(4) == 0) disk.WriteZeroes(offset, length);
                    else disk.Write(offset, new byte[length].Select(_ => (byte)(i + 1)).ToArray(), 0, (int)length);
                    if (i % 5 == 4) disk.Flush();
                }
            }
            catch (QcowException e) when (e.Kind == QcowErrorKind.IoError && plan.Failed)
            {
            }
            return writes;
        }

        [SkippableTheory]
        [InlineData(false)]
        [InlineData(true)]
        public void EveryFailurePointLeavesBitmapsExactOrInUse(bool addOwn)
        {
            DirtyMap.RequireNbdTools();
            using var dir = new TempDir();
            string pristine = dir.File("pristine.qcow2");
            Qemu.Img("create", "-f", "qcow2", "-o", "cluster_size=4096", pristine, Size.ToString());
            Qemu.Img("bitmap", "--add", "-g", Granularity.ToString(), pristine, "on");
            Qemu.Img("bitmap", "--add", "-g", "65536", pristine, "off");
            var earlier = new[] { (8192L, 100L), (1L << 20, 70000L) };
            Qemu.IoCommands(pristine, "qcow2", earlier.Select(w => $"write -P 3 {w.Item1} {w.Item2}").ToArray());
            Qemu.Img("bitmap", "--disable", pristine, "off");
            var initialOn = DirtyMap.FromEngine(pristine, "on");
            var initialOff = DirtyMap.FromEngine(pristine, "off");
            byte[] initialData = ReadAll(pristine);

            string work = dir.File("work.qcow2");
            File.Copy(pristine, work, true);
            var counting = new FaultInjectingFile.Plan();
            var writes = Execute(work, counting, addOwn);
            long events = counting.Events;
            _output.WriteLine($"{events} write/flush events");
            var finalOn = DirtyMap.Model(Size, Granularity, earlier.Concat(writes));
            DirtyMap.Equal(finalOn, DirtyMap.FromQemu(work, "on"), "clean run");
            if (addOwn) DirtyMap.Equal(DirtyMap.Model(Size, 8192, writes), DirtyMap.FromQemu(work, "ours"), "clean run, our bitmap");

            int inUse = 0, exactBefore = 0, exactAfter = 0;
            for (long n = 1; n <= events; n++)
            {
                File.Copy(pristine, work, true);
                var plan = new FaultInjectingFile.Plan { FailAt = n };
                Execute(work, plan, addOwn);
                Assert.True(plan.Failed, $"event {n} did not fail the run");
                using (DiskImage.Open(work, new OpenOptions { Writable = true })) { }  // a dirty image is repaired here
                var (corruptions, _, _) = Qemu.Check(work);
                if (corruptions != 0)
                    Assert.Fail($"failure at event {n} of {events} left {corruptions} corruptions:\n{Qemu.TryRun("qemu-img", "check", work).stderr}");

                var info = DirtyMap.QemuInfo(work);
                Assert.DoesNotContain("in-use", info["off"].Flags);
                DirtyMap.Equal(initialOff, DirtyMap.FromEngine(work, "off"), $"event {n}: disabled bitmap");
                if (info["on"].Flags.Contains("in-use")) { inUse++; continue; }
                var on = DirtyMap.FromQemu(work, "on");
                if (on.SequenceEqual(finalOn)) { exactAfter++; continue; }
                DirtyMap.Equal(initialOn, on, $"event {n}: bitmap 'on' is not in use, so it must be exact");
                Assert.True(initialData.AsSpan().SequenceEqual(ReadAll(work)), $"event {n}: guest data changed while bitmap 'on' shows no change and is not in use");
                exactBefore++;
            }
            _output.WriteLine($"in use {inUse}, exact before {exactBefore}, exact after {exactAfter}");
            Assert.True(inUse > 0 && exactBefore > 0);
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
