using QcowPS.Engine.Tests.Infrastructure;
using Xunit;

namespace QcowPS.Engine.Tests
{
    /// <summary>
    /// What qemu-img info must say of a conversion target, by target kind alone: the target's own
    /// properties (compat, cluster size, compression type, refcount bits, virtual size), whatever the
    /// source was. The expectations are written out here, not taken from the converter's options.
    /// </summary>
    internal static class ConvertTargetProperties
    {
        public static void AssertMatch(string sourcePath, string sourceFormat, string destination, string target)
        {
            long sourceSize = Qemu.Json("info", "--output=json", "-f", sourceFormat, sourcePath).GetProperty("virtual-size").GetInt64();
            var info = Qemu.Json("info", "--output=json", destination);
            string because = $"{sourcePath} -> {target}";
            Assert.True(sourceSize == info.GetProperty("virtual-size").GetInt64(), $"{because}: virtual size");
            if (target == "raw")
            {
                Assert.Equal("raw", info.GetProperty("format").GetString());
                return;
            }
            Assert.Equal("qcow2", info.GetProperty("format").GetString());
            Assert.True((target == "4k" ? 4096 : 65536) == info.GetProperty("cluster-size").GetInt32(), $"{because}: cluster size");
            var data = info.GetProperty("format-specific").GetProperty("data");
            Assert.True((target == "v2" ? "0.10" : "1.1") == data.GetProperty("compat").GetString(), $"{because}: compat");
            Assert.True((target == "zstd" ? "zstd" : "zlib") == data.GetProperty("compression-type").GetString(), $"{because}: compression type");
            Assert.True(16 == data.GetProperty("refcount-bits").GetInt32(), $"{because}: refcount bits");
            Assert.False(info.TryGetProperty("backing-filename", out _), $"{because}: the target has no backing file");
            if (target != "v2")
            {
                Assert.False(data.GetProperty("lazy-refcounts").GetBoolean(), $"{because}: lazy refcounts");
                Assert.False(data.TryGetProperty("extended-l2", out var extL2) && extL2.GetBoolean(), $"{because}: extended L2");
                Assert.False(data.TryGetProperty("data-file", out _), $"{because}: external data file");
            }
        }
    }
}
