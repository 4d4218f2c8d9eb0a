using System;
using System.IO;
using System.Linq;
using QcowPS.Engine.Operations;
using QcowPS.Engine.Qcow2;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace QcowPS.Engine.Tests.Bitmaps
{
    /// <summary>
    /// The incremental backup cycle: full backup with a new bitmap, writes, increment, more writes,
    /// second increment; each restored point equals the source at that point (qemu-img compare), and
    /// each increment holds only the dirty clusters (counted with qemu-img map, not assumed).
    /// </summary>
    public class IncrementalBackupTests
    {
        private readonly ITestOutputHelper _output;
        public IncrementalBackupTests(ITestOutputHelper output) { _output = output; }

        private const long Size = 64L << 20;

        private static void Writes(string image, int seed, int count, System.Collections.Generic.List<(long, long)> log)
        {
            var random = new Random(seed);
            using var disk = DiskImage.Open(image, new OpenOptions { Writable = true });
            for (int i = 0; i < count; i++)
            {
                long length = random.Next(1, 200_000);
                long offset = random.NextInt64(0, Size - length);
                var data = new byte[length];
                random.NextBytes(data);
                if (random.Next(5) == 0) disk.WriteZeroes(offset, length);
                else disk.Write(offset, data, 0, data.Length);
                log.Add((offset, length));
            }
        }

        /// <summary>Data clusters the image file itself stores (qemu-img map: depth 0, data).</summary>
        private static long StoredBytes(string image) =>
            JsonArray(Qemu.Img("map", "--output=json", image))
                .Where(e => e.GetProperty("depth").GetInt32() == 0 && e.GetProperty("data").GetBoolean())
                .Sum(e => e.GetProperty("length").GetInt64());

        private static System.Collections.Generic.IEnumerable<System.Text.Json.JsonElement> JsonArray(string json) =>
            System.Text.Json.JsonDocument.Parse(json).RootElement.EnumerateArray().Select(e => e.Clone()).ToArray();

        [SkippableFact]
        public void FullThenTwoIncrementsRestoreEachPoint()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string vm = dir.File("vm.qcow2");
            Qemu.Img("create", "-f", "qcow2", vm, Size.ToString());
            Qemu.IoCommands(vm, "qcow2", "write -P 1 0 8M", "write -P 2 40M 4M");

            // Full backup, and the bitmap that records what changes after it.
            string full = dir.File("full.qcow2");
            using (var source = DiskImage.Open(vm)) ImageConverter.Convert(source, full, new ConvertOptions());
            using (var disk = (Qcow2Image)DiskImage.Open(vm, new OpenOptions { Writable = true })) disk.AddBitmap("since");

            string previous = full;
            for (int round = 1; round <= 2; round++)
            {
                var log = new System.Collections.Generic.List<(long, long)>();
                Writes(vm, round, 25, log);
                string point = dir.File($"point{round}.qcow2");
                File.Copy(vm, point);  // the source as it is now, for the comparison

                string increment = dir.File($"inc{round}.qcow2");
                long dirty;
                using (var source = (Qcow2Image)DiskImage.Open(vm))
                {
                    dirty = source.GetBitmapDirtyBytes("since").Value;
                    ImageConverter.Convert(source, increment, new ConvertOptions { Bitmap = "since", BackingFile = Path.GetFileName(previous) });
                }
                using (var disk = (Qcow2Image)DiskImage.Open(vm, new OpenOptions { Writable = true })) disk.ClearBitmap("since");

                Qemu.AssertClean(increment);
                var (code, stdout, stderr) = Qemu.TryRun("qemu-img", "compare", point, increment);
                Assert.True(code == 0, $"round {round}: the restored point differs from the source: {stdout}{stderr}");
                long stored = StoredBytes(increment);
                _output.WriteLine($"round {round}: bitmap dirty {dirty} bytes, increment stores {stored} bytes, file {new FileInfo(increment).Length}");
                Assert.True(stored > 0 && stored <= dirty, $"round {round}: the increment stores {stored} bytes, the bitmap marks {dirty} dirty");
                // Restore: converting the chain gives a standalone image equal to the point.
                string restored = dir.File($"restored{round}.qcow2");
                using (var chain = DiskImage.Open(increment)) ImageConverter.Convert(chain, restored, new ConvertOptions());
                Assert.Equal(0, Qemu.TryRun("qemu-img", "compare", point, restored).exitCode);
                previous = increment;
            }
        }

        [SkippableFact]
        public void CopyBitmapsMatchesQemuImgConvertBitmaps()
        {
            DirtyMap.RequireNbdTools();
            using var dir = new TempDir();
            string vm = dir.File("vm.qcow2");
            Qemu.Img("create", "-f", "qcow2", vm, "8M");
            Qemu.Img("bitmap", "--add", "-g", "4096", vm, "a");
            Qemu.Img("bitmap", "--add", "-g", "1M", vm, "b");
            Qemu.IoCommands(vm, "qcow2", "write -P 1 100k 5000", "write -P 2 6M 1");
            Qemu.Img("bitmap", "--disable", vm, "b");
            string theirs = dir.File("theirs.qcow2"), ours = dir.File("ours.qcow2");
            Qemu.Img("convert", "-f", "qcow2", "-O", "qcow2", "--bitmaps", vm, theirs);
            using (var source = DiskImage.Open(vm)) ImageConverter.Convert(source, ours, new ConvertOptions { CopyBitmaps = true });
            Qemu.AssertClean(ours);
            var infoTheirs = DirtyMap.QemuInfo(theirs);
            var infoOurs = DirtyMap.QemuInfo(ours);
            Assert.Equal(infoTheirs.Keys, infoOurs.Keys);
            foreach (var name in infoTheirs.Keys)
            {
                Assert.Equal(infoTheirs[name].Granularity, infoOurs[name].Granularity);
                Assert.Equal(infoTheirs[name].Flags, infoOurs[name].Flags);
                DirtyMap.Equal(DirtyMap.FromQemu(theirs, name), DirtyMap.FromQemu(ours, name), name);
            }
        }
    }
}
