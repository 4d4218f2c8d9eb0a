using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace QcowPS.Engine.Tests.Infrastructure
{
    /// <summary>
    /// Images of every kind the read engine must handle, made at run time by qemu-img/qemu-io in a
    /// temp folder. Each holds data in several places: whole clusters, partial clusters, zeros, holes.
    /// </summary>
    public static class TestImages
    {
        public static readonly string[] Kinds =
        {
            "v2", "v3-512", "v3-4k", "v3-64k", "v3-2m", "refcount1", "refcount64", "zlib", "zstd",
            "extl2", "zero-discard", "chain3", "datafile", "snapshots", "qed-over-qcow2", "lazy", "raw-backing-shorter",
        };

        /// <summary>Writes a realistic raw file: text, random bytes, runs of zeros and repeated blocks.</summary>
        public static void WriteMixedRaw(string path, long size, int seed)
        {
            var random = new Random(seed);
            using var f = new FileStream(path, FileMode.Create, FileAccess.Write);
            f.SetLength(size);
            var block = new byte[65536];
            for (long pos = 0; pos < size; pos += block.Length)
            {
                int kind = random.Next(5);
                if (kind == 0) continue;  // hole / zeros
                if (kind == 1) random.NextBytes(block);
                else if (kind == 2)
                {
                    var text = Encoding.ASCII.GetBytes($"QcowPS test data block {pos:X} seed {seed} -- the quick brown fox jumps over the lazy dog. ");
                    for (int i = 0; i < block.Length; i++) block[i] = text[i % text.Length];
                }
                else if (kind == 3)
                {
                    Array.Clear(block);
                    random.NextBytes(block.AsSpan(0, random.Next(1, 4096)));
                }
                else
                {
                    for (int i = 0; i < block.Length; i++) block[i] = (byte)(i * 7 + seed);
                }
                f.Position = pos;
                f.Write(block, 0, (int)Math.Min(block.Length, size - pos));
            }
        }

        /// <summary>Standard writes: aligned and unaligned, small and large, with distinct patterns.</summary>
        public static string[] PatternWrites(long size) => new[]
        {
            "write -P 0x11 0 64k",
            "write -P 0x22 65536 4k",
            "write -P 0x33 1000 3000",
            $"write -P 0x44 {size / 2} 200k",
            $"write -P 0x55 {size - 4096} 4096",
            $"write -P 0x66 {size / 4 + 512} 1536",
        };

        public static TestImage Make(TempDir dir, string kind)
        {
            string img = dir.File(kind + ".qcow2");
            const long size = 8L << 20;
            switch (kind)
            {
                case "v2":
                    Qemu.Img("create", "-f", "qcow2", "-o", "compat=0.10", img, size.ToString());
                    Qemu.IoCommands(img, "qcow2", PatternWrites(size));
                    Qemu.IoCommands(img, "qcow2", "write -z 131072 65536");  // v2: zeros written as data or deallocated
                    return new TestImage { Path = img };
                case "v3-512":
                case "v3-4k":
                case "v3-64k":
                case "v3-2m":
                {
                    string cs = kind.Substring(3);
                    Qemu.Img("create", "-f", "qcow2", "-o", $"cluster_size={cs}", img, (size + 12345 * 512).ToString());
                    Qemu.IoCommands(img, "qcow2", PatternWrites(size));
                    return new TestImage { Path = img };
                }
                case "refcount1":
                case "refcount64":
                    Qemu.Img("create", "-f", "qcow2", "-o", $"refcount_bits={kind.Substring(8)}", img, size.ToString());
                    Qemu.IoCommands(img, "qcow2", PatternWrites(size));
                    return new TestImage { Path = img };
                case "zlib":
                case "zstd":
                {
                    string raw = dir.File(kind + "-src.raw");
                    WriteMixedRaw(raw, size, kind.Length);
                    Qemu.Img("convert", "-c", "-O", "qcow2", "-o", $"compression_type={kind}", raw, img);
                    File.Delete(raw);
                    // A partial overwrite of a compressed cluster (copy on write from compressed data)
                    Qemu.IoCommands(img, "qcow2", "write -P 0x77 70000 5000");
                    return new TestImage { Path = img };
                }
                case "extl2":
                    Qemu.Img("create", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=64k", img, size.ToString());
                    Qemu.IoCommands(img, "qcow2",
                        "write -P 0x11 0 2k",            // one subcluster
                        "write -P 0x22 8k 6k",           // three subclusters
                        "write -P 0x33 65536 64k",       // a whole cluster
                        "write -z 69632 4k",             // zero two subclusters inside it
                        "write -P 0x44 300000 1000",     // unaligned, inside one subcluster
                        "write -z 1M 8k",                // zeroed subclusters in an unallocated cluster
                        $"write -P 0x55 {size - 2048} 2k");
                    return new TestImage { Path = img };
                case "zero-discard":
                    Qemu.Img("create", "-f", "qcow2", img, size.ToString());
                    Qemu.IoCommands(img, "qcow2", "write -P 0x11 0 1M", "write -z 128k 128k", "discard 512k 128k",
                        "write -P 0x22 2M 256k", "write -z -u 2M 64k", "discard 3M 1M", "write -z 5M 64k");
                    return new TestImage { Path = img };
                case "chain3":
                {
                    string baseRaw = dir.File("chain-base.raw");
                    string mid = dir.File("chain-mid.qcow2");
                    WriteMixedRaw(baseRaw, 3L << 20, 7);
                    Qemu.Img("create", "-f", "qcow2", "-b", Path.GetFileName(baseRaw), "-F", "raw", mid, (5L << 20).ToString());
                    Qemu.IoCommands(mid, "qcow2", "write -P 0xAA 1M 100k", "write -P 0xAB 4M 64k", "write -z 0 64k");
                    Qemu.Img("create", "-f", "qcow2", "-b", Path.GetFileName(mid), "-F", "qcow2", img, size.ToString());
                    Qemu.IoCommands(img, "qcow2", "write -P 0xBB 1M 4k", "write -P 0xBC 6M 64k", "write -P 0xBD 2M 512");
                    return new TestImage { Path = img };
                }
                case "datafile":
                {
                    string data = dir.File("datafile.data");
                    Qemu.Img("create", "-f", "qcow2", "-o", $"data_file={data}", img, size.ToString());
                    Qemu.IoCommands(img, "qcow2", PatternWrites(size));
                    return new TestImage { Path = img };
                }
                case "snapshots":
                    Qemu.Img("create", "-f", "qcow2", img, size.ToString());
                    Qemu.IoCommands(img, "qcow2", "write -P 0x11 0 256k", "write -P 0x12 4M 64k");
                    Qemu.Img("snapshot", "-c", "first", img);
                    Qemu.IoCommands(img, "qcow2", "write -P 0x21 64k 64k", "write -z 4M 64k", "write -P 0x22 6M 8k");
                    Qemu.Img("snapshot", "-c", "second", img);
                    Qemu.IoCommands(img, "qcow2", "write -P 0x31 0 4k", "write -P 0x32 7M 4k");
                    return new TestImage { Path = img, Snapshots = new[] { "first", "second" } };
                case "qed-over-qcow2":
                {
                    string baseImg = dir.File("qed-base.qcow2");
                    string qed = dir.File("top.qed");
                    Qemu.Img("create", "-f", "qcow2", baseImg, size.ToString());
                    Qemu.IoCommands(baseImg, "qcow2", PatternWrites(size));
                    Qemu.Img("create", "-f", "qed", "-b", Path.GetFileName(baseImg), "-F", "qcow2", qed, size.ToString());
                    Qemu.IoCommands(qed, "qed", "write -P 0x99 0 4k", "write -P 0x9A 3M 100k", "write -z 65536 64k");
                    return new TestImage { Path = qed, Format = "qed" };
                }
                case "lazy":
                    Qemu.Img("create", "-f", "qcow2", "-o", "lazy_refcounts=on", img, size.ToString());
                    Qemu.IoCommands(img, "qcow2", PatternWrites(size));
                    return new TestImage { Path = img };
                case "raw-backing-shorter":
                {
                    string baseRaw = dir.File("short-base.raw");
                    WriteMixedRaw(baseRaw, (1L << 20) + 512, 3);
                    Qemu.Img("create", "-f", "qcow2", "-b", Path.GetFileName(baseRaw), "-F", "raw", img, size.ToString());
                    Qemu.IoCommands(img, "qcow2", "write -P 0x5A 1020k 8k");
                    return new TestImage { Path = img };
                }
                default:
                    throw new ArgumentException(kind);
            }
        }

        public static IEnumerable<object[]> KindData()
        {
            foreach (var k in Kinds) yield return new object[] { k };
        }
    }
}
