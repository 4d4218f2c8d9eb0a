using System;
using System.IO;
using Xunit;

namespace QcowPS.Engine.Tests.Infrastructure
{
    public static class ImageAssert
    {
        /// <summary>Every guest byte of the disk equals the raw file (compared in 1 MiB pieces).</summary>
        public static void SameBytes(string rawPath, VirtualDisk disk, string what = null)
        {
            using var raw = new FileStream(rawPath, FileMode.Open, FileAccess.Read);
            Assert.Equal(raw.Length, disk.Length);
            var expected = new byte[1 << 20];
            var actual = new byte[1 << 20];
            for (long offset = 0; offset < disk.Length;)
            {
                int n = (int)Math.Min(expected.Length, disk.Length - offset);
                raw.Position = offset;
                int got = 0;
                while (got < n) got += raw.Read(expected, got, n - got);
                disk.Read(offset, actual, 0, n);
                if (!expected.AsSpan(0, n).SequenceEqual(actual.AsSpan(0, n)))
                {
                    int i = 0;
                    while (expected[i] == actual[i]) i++;
                    Assert.Fail($"{what ?? disk.Path}: first difference at guest offset 0x{offset + i:X}: expected 0x{expected[i]:X2}, read 0x{actual[i]:X2}");
                }
                offset += n;
            }
        }

        /// <summary>Converts with qemu-img to raw (optionally one snapshot) and compares every byte.</summary>
        public static void MatchesQemu(TempDir dir, string image, VirtualDisk disk, string snapshot = null, string format = null)
        {
            string raw = dir.File("expected-" + Guid.NewGuid().ToString("N").Substring(0, 8) + ".raw");
            if (snapshot == null) Qemu.Img("convert", "-O", "raw", image, raw);
            else Qemu.Img("convert", "-O", "raw", "-l", "snapshot.name=" + snapshot, image, raw);
            try { SameBytes(raw, disk, $"{Path.GetFileName(image)}{(snapshot != null ? "@" + snapshot : "")}"); }
            finally { File.Delete(raw); }
        }
    }
}
