using System.Collections.Generic;
using System.IO;
using System.Linq;
using QcowPS.Engine.IO;
using QcowPS.Engine.Operations;
using QcowPS.Engine.Qcow2;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;

namespace QcowPS.Engine.Tests
{
    /// <summary>
    /// The engine rules issue 14 moved out of the cmdlets: raw only for the file named, QEMU's format names
    /// and extensions, one new-file rule (exists check, temp + rename, nothing left on failure), I/O errors
    /// resize checked before it is done, a chain described layer by layer.
    /// </summary>
    public class SurfaceRulesTests
    {
        [Theory]
        [InlineData("a.qcow2", ImageFormat.Qcow2)]
        [InlineData("a.QCOW", ImageFormat.Qcow2)]
        [InlineData("b.raw", ImageFormat.Raw)]
        [InlineData("c.qed", ImageFormat.Qed)]
        [InlineData("d.img", ImageFormat.Auto)]
        [InlineData("noextension", ImageFormat.Auto)]
        public void ExtensionNamesTheFormat(string name, ImageFormat expected) =>
            Assert.Equal(expected, ImageFormats.FromExtension(name));

        [Fact]
        public void QemuNamesAreLowerCase()
        {
            Assert.Equal("qcow2", ImageFormats.QemuName(ImageFormat.Qcow2));
            Assert.Equal("raw", ImageFormats.QemuName(ImageFormat.Raw));
            Assert.Null(ImageFormats.QemuName(ImageFormat.Auto));
        }

        [Fact]
        public void UnrecognisedFileReadsAsRawOnlyWhenAsked()
        {
            using var dir = new TempDir();
            string path = dir.File("data.bin");
            File.WriteAllBytes(path, new byte[4096]);
            var e = Assert.Throws<QcowException>(() => DiskImage.Open(path).Dispose());
            Assert.Equal(QcowErrorKind.WrongFormat, e.Kind);
            using var disk = DiskImage.Open(path, new OpenOptions { UnrecognisedAsRaw = true });
            Assert.Equal(ImageFormat.Raw, disk.Format);
            Assert.Equal(4096, disk.Length);
        }

        [Fact]
        public void NewFileRefusesAnExistingFileAndAMissingFolder()
        {
            using var dir = new TempDir();
            string existing = dir.File("there.qcow2");
            File.WriteAllText(existing, "x");
            Assert.Equal(QcowErrorKind.AlreadyExists, Assert.Throws<QcowException>(() => NewFile.CheckCanCreate(existing, false)).Kind);
            NewFile.CheckCanCreate(existing, true);
            var missing = Assert.Throws<QcowException>(() => NewFile.CheckCanCreate(dir.File("no/such.qcow2"), true));
            Assert.Equal(QcowErrorKind.NotFound, missing.Kind);
            Assert.Equal(dir.File("no/such.qcow2"), missing.FilePath);
        }

        [SkippableFact]
        public void RawExportLeavesNothingWhenTheCopyFails()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string image = dir.File("cut.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", image, "4M");
            Qemu.IoCommands(image, "qcow2", "write -P 0x11 0 64k", "write -P 0x22 3M 64k");
            using (var f = new FileStream(image, FileMode.Open)) f.SetLength(f.Length - 65536);
            string target = dir.File("out.raw");
            using (var disk = DiskImage.Open(image))
                Assert.Throws<QcowException>(() => RawExporter.Export(disk, 0, disk.Length, target, false));
            Assert.Equal(new[] { "cut.qcow2" }, Directory.GetFiles(dir.Path).Select(Path.GetFileName).ToArray());
        }

        [SkippableFact]
        public void ResizeIsCheckedWithoutWriting()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string image = dir.File("r.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", image, "4M");
            using var disk = (Qcow2Image)DiskImage.Open(image, new OpenOptions { OpenBackingChain = false });
            Assert.Equal(8L << 20, disk.CheckResize((8L << 20) - 100, false));
            var e = Assert.Throws<QcowException>(() => disk.CheckResize(1 << 20, false));
            Assert.Contains("-AllowShrink", e.Message);
        }

        [SkippableFact]
        public void ChainIsDescribedLayerByLayerUpToTheMissingOne()
        {
            Qemu.Require();
            using var dir = new TempDir();
            Qemu.Img("create", "-q", "-f", "qcow2", dir.File("base.qcow2"), "4M");
            Qemu.Img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", dir.File("mid.qcow2"));
            Qemu.Img("create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", dir.File("top.qcow2"));
            File.Delete(dir.File("base.qcow2"));
            var layers = new List<QcowImageInfo>();
            var e = Assert.Throws<QcowException>(() => ImageInspector.DescribeChain(dir.File("top.qcow2"), new OpenOptions(), layers));
            Assert.Equal(QcowErrorKind.NotFound, e.Kind);
            Assert.Equal(new[] { dir.File("top.qcow2"), dir.File("mid.qcow2") }, layers.Select(l => l.Path).ToArray());
        }
    }
}
