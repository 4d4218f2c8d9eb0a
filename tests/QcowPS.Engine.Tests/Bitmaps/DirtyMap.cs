using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.Json;
using QcowPS.Engine.Qcow2;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;

namespace QcowPS.Engine.Tests.Bitmaps
{
    /// <summary>
    /// Dirty maps as merged (offset, length, dirty) runs: what QEMU reports (qemu-nbd -B NAME +
    /// nbdinfo --map=qemu:dirty-bitmap:NAME, the server started by nbdinfo on a Unix socket and
    /// stopped with it), what our engine reports, and a model computed from the writes a test made.
    /// </summary>
    public static class DirtyMap
    {
        /// <summary>Fails under CI when nbdinfo or qemu-nbd is missing; skips elsewhere.</summary>
        public static void RequireNbdTools()
        {
            Qemu.Require();
            bool present = System.IO.File.Exists("/usr/bin/nbdinfo") && System.IO.File.Exists("/usr/bin/qemu-nbd");
            if (present) return;
            if (Qemu.IsCI) Assert.Fail("nbdinfo or qemu-nbd is missing and CI=true: install libnbd-bin and qemu-utils (.ci/run does)");
            Skip.If(true, "nbdinfo/qemu-nbd not installed; bitmap oracle test skipped outside CI");
        }

        /// <summary>QEMU's view of a bitmap through its NBD server.</summary>
        public static List<(long Offset, long Length, bool Dirty)> FromQemu(string image, string bitmap)
        {
            RequireNbdTools();
            string output = Qemu.Run("/usr/bin/nbdinfo", "--json", "--map=qemu:dirty-bitmap:" + bitmap, "--",
                "[", "/usr/bin/qemu-nbd", "-r", "-f", "qcow2", "-B", bitmap, image, "]");
            var runs = JsonDocument.Parse(output).RootElement.EnumerateArray()
                .Select(e => (e.GetProperty("offset").GetInt64(), e.GetProperty("length").GetInt64(), (e.GetProperty("type").GetInt32() & 1) != 0));
            return Merge(runs);
        }

        public static List<(long Offset, long Length, bool Dirty)> FromEngine(string image, string bitmap)
        {
            using var disk = (Qcow2Image)DiskImage.Open(image, new OpenOptions());
            return Merge(disk.GetBitmapExtents(bitmap).Select(e => (e.Offset, e.Length, e.Dirty)));
        }

        /// <summary>The runs a bitmap of this granularity must show after these writes (each marks every granule it touches).</summary>
        public static List<(long Offset, long Length, bool Dirty)> Model(long diskSize, long granularity, IEnumerable<(long Offset, long Length)> writes)
        {
            long granules = (diskSize + granularity - 1) / granularity;
            var dirty = new bool[granules];
            foreach (var (offset, length) in writes)
            {
                if (length <= 0 || offset >= diskSize) continue;
                long end = Math.Min(diskSize, offset + length);
                for (long g = offset / granularity; g <= (end - 1) / granularity; g++) dirty[g] = true;
            }
            var runs = new List<(long, long, bool)>();
            for (long g = 0; g < granules; g++)
            {
                long start = g * granularity;
                runs.Add((start, Math.Min(diskSize, start + granularity) - start, dirty[g]));
            }
            return Merge(runs);
        }

        public static List<(long Offset, long Length, bool Dirty)> Merge(IEnumerable<(long Offset, long Length, bool Dirty)> runs)
        {
            var merged = new List<(long Offset, long Length, bool Dirty)>();
            foreach (var r in runs)
            {
                if (r.Length == 0) continue;
                if (merged.Count > 0 && merged[^1].Dirty == r.Dirty && merged[^1].Offset + merged[^1].Length == r.Offset)
                    merged[^1] = (merged[^1].Offset, merged[^1].Length + r.Length, r.Dirty);
                else merged.Add(r);
            }
            return merged;
        }

        public static string Show(IEnumerable<(long Offset, long Length, bool Dirty)> runs) =>
            string.Join("\n", runs.Select(r => $"{r.Offset,12} {r.Length,12} {(r.Dirty ? "dirty" : "clean")}"));

        public static void Equal(List<(long, long, bool)> expected, List<(long, long, bool)> actual, string what)
        {
            if (!expected.SequenceEqual(actual))
                Assert.Fail($"{what}: dirty maps differ\nexpected:\n{Show(expected)}\nactual:\n{Show(actual)}");
        }

        /// <summary>qemu-img info's bitmaps: name -> flags.</summary>
        public static Dictionary<string, (string[] Flags, long Granularity)> QemuInfo(string image)
        {
            var json = Qemu.Json("info", "-U", "--output=json", image);
            var result = new Dictionary<string, (string[], long)>();
            if (!json.TryGetProperty("format-specific", out var fs) || !fs.GetProperty("data").TryGetProperty("bitmaps", out var list)) return result;
            foreach (var b in list.EnumerateArray())
                result[b.GetProperty("name").GetString()] =
                    (b.GetProperty("flags").EnumerateArray().Select(f => f.GetString()).ToArray(), b.GetProperty("granularity").GetInt64());
            return result;
        }
    }
}
