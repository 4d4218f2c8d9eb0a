using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json;
using QcowPS.Engine.Operations;
using QcowPS.Engine.Qcow2;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;

namespace QcowPS.Engine.Tests
{
    /// <summary>Every kind of image QEMU makes reads byte-identical to qemu-img convert -O raw; info and map agree.</summary>
    public class ReadInteropTests
    {
        [SkippableTheory]
        [MemberData(nameof(TestImages.KindData), MemberType = typeof(TestImages))]
        public void EveryByteMatchesQemuImgConvert(string kind)
        {
            Qemu.Require();
            using var dir = new TempDir();
            var image = TestImages.Make(dir, kind);
            using var disk = DiskImage.Open(image.Path);
            ImageAssert.MatchesQemu(dir, image.Path, disk);
            foreach (var snapshot in image.Snapshots)
            {
                using var view = ((Qcow2Image)disk).OpenSnapshot(snapshot);
                ImageAssert.MatchesQemu(dir, image.Path, view, snapshot);
            }
        }

        [SkippableTheory]
        [MemberData(nameof(TestImages.KindData), MemberType = typeof(TestImages))]
        public void InfoAgreesWithQemuImgInfo(string kind)
        {
            Qemu.Require();
            using var dir = new TempDir();
            var image = TestImages.Make(dir, kind);
            var q = Qemu.Json("info", "--output=json", image.Path);
            using var disk = DiskImage.Open(image.Path, new OpenOptions { OpenBackingChain = false });
            var info = ImageInspector.Describe(disk);

            Assert.Equal(q.GetProperty("virtual-size").GetInt64(), info.VirtualSize);
            Assert.Equal(q.GetProperty("format").GetString(), info.Format.ToString().ToLowerInvariant());
            Assert.Equal(q.GetProperty("actual-size").GetInt64(), info.ActualSize);
            if (q.TryGetProperty("cluster-size", out var cs)) Assert.Equal(cs.GetInt32(), info.ClusterSize);
            Assert.Equal(q.TryGetProperty("dirty-flag", out var dirty) && dirty.GetBoolean(), info.Dirty);
            Assert.Equal(q.TryGetProperty("backing-filename", out var bf) ? bf.GetString() : null, info.BackingFile);
            Assert.Equal(q.TryGetProperty("full-backing-filename", out var fbf) ? fbf.GetString() : null, info.FullBackingFile);
            Assert.Equal(q.TryGetProperty("backing-filename-format", out var bff) ? bff.GetString() : null, info.BackingFormat);
            Assert.Equal(q.TryGetProperty("snapshots", out var snaps) ? snaps.GetArrayLength() : 0, info.SnapshotCount);
            Assert.Equal(q.TryGetProperty("encrypted", out var enc) && enc.GetBoolean(), info.Encrypted);
            if (image.Format == "qcow2")
            {
                var data = q.GetProperty("format-specific").GetProperty("data");
                Assert.Equal(data.GetProperty("compat").GetString(), info.Compat);
                Assert.Equal(data.GetProperty("refcount-bits").GetInt32(), info.RefcountBits);
                Assert.Equal(data.GetProperty("compression-type").GetString(), info.CompressionType.ToString().ToLowerInvariant());
                if (data.TryGetProperty("lazy-refcounts", out var lazy)) Assert.Equal(lazy.GetBoolean(), info.LazyRefcounts);
                if (data.TryGetProperty("corrupt", out var corrupt)) Assert.Equal(corrupt.GetBoolean(), info.Corrupt);
                if (data.TryGetProperty("extended-l2", out var ext)) Assert.Equal(ext.GetBoolean(), info.ExtendedL2);
                Assert.Equal(data.TryGetProperty("data-file", out var df) ? df.GetString() : null, info.DataFile);
                if (data.TryGetProperty("data-file-raw", out var dfr)) Assert.Equal(dfr.GetBoolean(), info.DataFileRaw);
            }
            if (q.TryGetProperty("snapshots", out var list))
            {
                var ours = ((Qcow2Image)disk).Snapshots;
                foreach (var s in list.EnumerateArray())
                {
                    var mine = ours.Single(o => o.Id == s.GetProperty("id").GetString());
                    Assert.Equal(s.GetProperty("name").GetString(), mine.Name);
                    Assert.Equal(s.GetProperty("vm-state-size").GetInt64(), (long)mine.VmStateSize);
                    Assert.Equal(s.GetProperty("date-sec").GetInt64(), mine.DateSeconds);
                    Assert.Equal(s.GetProperty("date-nsec").GetInt64(), mine.DateNanoseconds);
                    Assert.Equal(s.GetProperty("vm-clock-sec").GetInt64() * 1_000_000_000 + s.GetProperty("vm-clock-nsec").GetInt64(), (long)mine.VmClockNanoseconds);
                }
            }
        }

        [SkippableTheory]
        [MemberData(nameof(TestImages.KindData), MemberType = typeof(TestImages))]
        public void ExtentsAgreeWithQemuImgMap(string kind)
        {
            Qemu.Require();
            using var dir = new TempDir();
            var image = TestImages.Make(dir, kind);
            var map = Qemu.Json("map", "--output=json", image.Path);
            using var disk = DiskImage.Open(image.Path);
            var ours = ImageInspector.Extents(disk, 0, disk.Length).ToList();
            Assert.Equal(disk.Length, ours.Sum(e => e.Length));
            foreach (var entry in map.EnumerateArray())
            {
                long start = entry.GetProperty("start").GetInt64();
                long length = entry.GetProperty("length").GetInt64();
                bool data = entry.GetProperty("data").GetBoolean();
                bool present = entry.TryGetProperty("present", out var p) ? p.GetBoolean() : data;
                bool zero = entry.GetProperty("zero").GetBoolean();
                int depth = entry.GetProperty("depth").GetInt32();
                foreach (var e in ours.Where(e => e.VirtualOffset < start + length && e.VirtualOffset + e.Length > start))
                {
                    string where = $"{kind}: qemu [{start:X}+{length:X}] data={data} zero={zero} present={present} depth={depth}; ours [{e.VirtualOffset:X}+{e.Length:X}] {e.ClusterType} layer {e.Layer}";
                    bool ourData = e.ClusterType == ClusterType.Normal || e.ClusterType == ClusterType.Compressed;
                    Assert.True(ourData == data, where);
                    if (!data) Assert.True(zero == (e.ClusterType != ClusterType.Unallocated || present == false), where);
                    bool ourPresent = e.ClusterType != ClusterType.Unallocated;
                    Assert.True(ourPresent == present, where);
                    if (present) Assert.True(depth == e.Layer, where);
                }
            }
        }
    }
}
