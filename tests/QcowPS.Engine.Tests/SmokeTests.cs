using QcowPS.Engine.Tests.Infrastructure;
using Xunit;

namespace QcowPS.Engine.Tests
{
    public class SmokeTests
    {
        [SkippableFact]
        public void ReadsSimpleQcow2()
        {
            Qemu.Require();
            using var dir = new TempDir();
            var img = dir.File("a.qcow2");
            Qemu.Img("create", "-f", "qcow2", img, "4M");
            Qemu.IoCommands(img, "qcow2", "write -P 0xab 0 64k", "write -P 0x11 1M 4k", "write -z 2M 64k");
            using var disk = DiskImage.Open(img);
            ImageAssert.MatchesQemu(dir, img, disk);
        }
    }
}
