using System.Collections.Generic;
using System;
using System.IO;
using System.Linq;
using System.Threading.Tasks;
using QcowPS.Engine.Qcow2;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;

namespace QcowPS.Engine.Tests
{
    /// <summary>
    /// Broken and hostile images: each gives a QcowException of the right kind whose message names
    /// the problem; none crashes, hangs, or allocates memory out of proportion to the file.
    /// </summary>
    public class HostileImageTests
    {
        // Header field offsets: the engine's own layout, so the tests patch exactly the fields it reads
        // (HeaderLayoutMatchesTheSpec pins the layout itself to the spec's numbers).
        private const int Version = Qcow2HeaderLayout.Version, BackingOffset = Qcow2HeaderLayout.BackingFileOffset;
        private const int BackingSize = Qcow2HeaderLayout.BackingFileSize, ClusterBits = Qcow2HeaderLayout.ClusterBits;
        private const int L1Size = Qcow2HeaderLayout.L1Size, L1Offset = Qcow2HeaderLayout.L1TableOffset;
        private const int SnapshotCount = Qcow2HeaderLayout.SnapshotCount, SnapshotOffset = Qcow2HeaderLayout.SnapshotsOffset;
        private const int Incompatible = Qcow2HeaderLayout.IncompatibleFeatures, RefcountOrder = Qcow2HeaderLayout.RefcountOrder;
        private const int HeaderLength = Qcow2HeaderLayout.HeaderLength;

        /// <summary>The layout's offsets, built from field lengths, are the spec's numbers ("Header", "Header extensions").</summary>
        [Fact]
        public void HeaderLayoutMatchesTheSpec()
        {
            var expected = new (int Actual, int Spec)[]
            {
                (Qcow2HeaderLayout.Magic, 0), (Qcow2HeaderLayout.Version, 4), (Qcow2HeaderLayout.BackingFileOffset, 8),
                (Qcow2HeaderLayout.BackingFileSize, 16), (Qcow2HeaderLayout.ClusterBits, 20), (Qcow2HeaderLayout.Size, 24),
                (Qcow2HeaderLayout.CryptMethod, 32), (Qcow2HeaderLayout.L1Size, 36), (Qcow2HeaderLayout.L1TableOffset, 40),
                (Qcow2HeaderLayout.RefcountTableOffset, 48), (Qcow2HeaderLayout.RefcountTableClusters, 56),
                (Qcow2HeaderLayout.SnapshotCount, 60), (Qcow2HeaderLayout.SnapshotsOffset, 64), (Qcow2HeaderLayout.V2End, 72),
                (Qcow2HeaderLayout.IncompatibleFeatures, 72), (Qcow2HeaderLayout.CompatibleFeatures, 80),
                (Qcow2HeaderLayout.AutoclearFeatures, 88), (Qcow2HeaderLayout.RefcountOrder, 96), (Qcow2HeaderLayout.HeaderLength, 100),
                (Qcow2HeaderLayout.V3End, 104), (Qcow2HeaderLayout.CompressionType, 104), (Qcow2HeaderLayout.KnownFieldsEnd, 112),
                (Qcow2HeaderLayout.ExtensionLength, 4), (Qcow2HeaderLayout.ExtensionData, 8),
                (Qcow2HeaderLayout.FeatureNameText, 2), (Qcow2HeaderLayout.FeatureNameEntryLength, 48),
                (Qcow2HeaderLayout.BitmapsDirectorySize, 8), (Qcow2HeaderLayout.BitmapsDirectoryOffset, 16), (Qcow2HeaderLayout.BitmapsExtensionLength, 24),
                (Qcow2HeaderLayout.EncryptionHeaderLength, 8), (Qcow2HeaderLayout.EncryptionExtensionLength, 16),
            };
            for (int i = 0; i < expected.Length; i++) Assert.True(expected[i].Spec == expected[i].Actual, $"field {i}: {expected[i].Actual}, the spec says {expected[i].Spec}");
        }

        /// <summary>Opens the image and reads every byte; returns the error, checking time and memory bounds.</summary>
        private static QcowException OpenAndReadAll(string path, ImageFormat format = ImageFormat.Auto)
        {
            long fileSize = new FileInfo(path).Length;
            var task = Task.Run(() =>
            {
                long before = GC.GetAllocatedBytesForCurrentThread();
                try
                {
                    using var disk = DiskImage.Open(path, new OpenOptions { Format = format });
                    var buffer = new byte[1 << 20];
                    for (long pos = 0; pos < disk.Length; pos += buffer.Length)
                        disk.Read(pos, buffer, 0, (int)Math.Min(buffer.Length, disk.Length - pos));
                    return (QcowException)null;
                }
                catch (QcowException e)
                {
                    long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
                    // Out of proportion = more than a few times the file plus fixed buffers.
                    Assert.True(allocated < 8 * fileSize + (16 << 20), $"allocated {allocated} bytes for a {fileSize}-byte file");
                    return e;
                }
            });
            Assert.True(task.Wait(TimeSpan.FromSeconds(60)), "opening the hostile image hung");
            return task.Result;
        }

        private static void AssertError(QcowException e, QcowErrorKind kind, params string[] words)
        {
            Assert.NotNull(e);
            Assert.Equal(kind, e.Kind);
            foreach (var w in words) Assert.Contains(w, e.Message, StringComparison.OrdinalIgnoreCase);
        }

        private static string MakeImage(TempDir dir, string name = "bad.qcow2", string options = null, string size = "4M")
        {
            string path = dir.File(name);
            if (options == null) Qemu.Img("create", "-f", "qcow2", path, size);
            else Qemu.Img("create", "-f", "qcow2", "-o", options, path, size);
            Qemu.IoCommands(path, "qcow2", "write -P 0x5a 0 128k");
            return path;
        }

        [Fact]
        public void TruncatedHeader()
        {
            using var dir = new TempDir();
            string path = dir.File("short.qcow2");
            var bytes = new byte[50];
            new byte[] { 0x51, 0x46, 0x49, 0xFB, 0, 0, 0, 3 }.CopyTo(bytes, 0);
            File.WriteAllBytes(path, bytes);
            AssertError(OpenAndReadAll(path), QcowErrorKind.Corrupt, "Truncated", "50 bytes");
        }

        [SkippableFact]
        public void TruncatedV3HeaderBeyondV2Part()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = MakeImage(dir);
            using (var f = new FileStream(path, FileMode.Open)) f.SetLength(90);
            AssertError(OpenAndReadAll(path), QcowErrorKind.Corrupt, "Truncated", "v3");
        }

        [SkippableFact]
        public void BadMagic()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = MakeImage(dir);
            FilePatch.U32(path, 0, 0x12345678);
            AssertError(OpenAndReadAll(path, ImageFormat.Qcow2), QcowErrorKind.WrongFormat, "no known magic");
            // Without a format the file is not guessed as raw.
            AssertError(OpenAndReadAll(path), QcowErrorKind.WrongFormat, "not a qcow2 or QED image", "-Format Raw");
        }

        [SkippableTheory]
        [InlineData(1u)]
        [InlineData(4u)]
        public void UnsupportedVersions(uint version)
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = MakeImage(dir);
            FilePatch.U32(path, Version, version);
            AssertError(OpenAndReadAll(path), QcowErrorKind.Unsupported, "version " + version);
        }

        [SkippableTheory]
        [InlineData(8u)]
        [InlineData(22u)]
        [InlineData(63u)]
        public void ClusterBitsOutOfRange(uint bits)
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = MakeImage(dir);
            FilePatch.U32(path, ClusterBits, bits);
            AssertError(OpenAndReadAll(path), QcowErrorKind.Corrupt, "cluster_bits " + bits);
        }

        [SkippableFact]
        public void L1TableTooLarge()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = MakeImage(dir);
            FilePatch.U32(path, L1Size, 5_000_000);
            AssertError(OpenAndReadAll(path), QcowErrorKind.Corrupt, "L1 table too large");
        }

        [SkippableFact]
        public void L1TablePastEndOfFile()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = MakeImage(dir);
            FilePatch.U32(path, L1Size, 1_000_000);
            AssertError(OpenAndReadAll(path), QcowErrorKind.Corrupt, "L1 table", "past the end of the file");
        }

        [SkippableFact]
        public void L1TableUnaligned()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = MakeImage(dir);
            ulong l1 = FilePatch.ReadU64(path, L1Offset);
            FilePatch.U64(path, L1Offset, l1 + 8);
            AssertError(OpenAndReadAll(path), QcowErrorKind.Corrupt, "L1 table", "not aligned");
        }

        [SkippableFact]
        public void L1TableTooSmallForTheVirtualSize()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = MakeImage(dir, size: "1T");
            FilePatch.U32(path, L1Size, 1);
            AssertError(OpenAndReadAll(path), QcowErrorKind.Corrupt, "L1 table is too small");
        }

        private static long FirstL2Table(string path) => (long)(FilePatch.ReadU64(path, (long)FilePatch.ReadU64(path, L1Offset)) & 0x00FFFFFFFFFFFE00UL);

        [SkippableFact]
        public void L2EntryPastEndOfFile()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = MakeImage(dir);
            long l2 = FirstL2Table(path);
            FilePatch.U64(path, l2 + 8, 0x8000_0000_4000_0000UL);  // COPIED, host offset 1 GiB
            AssertError(OpenAndReadAll(path), QcowErrorKind.Corrupt, "0x40000000", "past the end of the file");
        }

        [SkippableFact]
        public void L2EntryUnaligned()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = MakeImage(dir);
            long l2 = FirstL2Table(path);
            FilePatch.U64(path, l2, 0x8000_0000_0005_0200UL);
            AssertError(OpenAndReadAll(path), QcowErrorKind.Corrupt, "unaligned");
        }

        [SkippableFact]
        public void L2TablePastEndOfFile()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = MakeImage(dir);
            long l1 = (long)FilePatch.ReadU64(path, L1Offset);
            FilePatch.U64(path, l1, 0x8000_0000_4000_0000UL);
            AssertError(OpenAndReadAll(path), QcowErrorKind.Corrupt, "L2 table", "past the end of the file");
        }

        private static string MakeCompressed(TempDir dir)
        {
            string raw = dir.File("src.raw");
            TestImages.WriteMixedRaw(raw, 2 << 20, 11);
            string path = dir.File("c.qcow2");
            Qemu.Img("convert", "-c", "-O", "qcow2", raw, path);
            return path;
        }

        private static (long l2EntryAt, ulong entry) FirstCompressedEntry(string path)
        {
            long l2 = FirstL2Table(path);
            for (int i = 0; i < 8192; i++)
            {
                ulong e = FilePatch.ReadU64(path, l2 + i * 8);
                if ((e & (1UL << 62)) != 0) return (l2 + i * 8, e);
            }
            throw new InvalidOperationException("no compressed cluster");
        }

        [SkippableFact]
        public void CompressedClusterPastEndOfFile()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = MakeCompressed(dir);
            var (at, entry) = FirstCompressedEntry(path);
            // Keep the sector count, move the offset to 1 GiB.
            ulong mask = (1UL << 54) - 1;
            FilePatch.U64(path, at, (entry & ~mask) | 0x4000_0000UL);
            AssertError(OpenAndReadAll(path), QcowErrorKind.Corrupt, "compressed cluster", "past the end of the file");
        }

        [SkippableFact]
        public void CorruptCompressedStream()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = MakeCompressed(dir);
            var (_, entry) = FirstCompressedEntry(path);
            long offset = (long)(entry & ((1UL << 54) - 1));
            var garbage = new byte[64];
            new Random(1).NextBytes(garbage);
            garbage[0] = 0xFF;  // block type 3 (reserved): invalid in any deflate stream
            FilePatch.Bytes(path, offset, garbage);
            AssertError(OpenAndReadAll(path), QcowErrorKind.Corrupt, "compressed cluster", "not a valid deflate stream");
        }

        [SkippableFact]
        public void SnapshotTableWithImpossibleCount()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = MakeImage(dir);
            Qemu.Img("snapshot", "-c", "s1", path);
            FilePatch.U32(path, SnapshotCount, 70000);
            AssertError(OpenAndReadAll(path), QcowErrorKind.Corrupt, "70000", "65536");
            FilePatch.U32(path, SnapshotCount, 60000);
            AssertError(OpenAndReadAll(path), QcowErrorKind.Corrupt, "Snapshot table", "past the end");
            FilePatch.U32(path, SnapshotCount, 2);  // the second entry reads whatever follows the first
            var e = OpenAndReadAll(path);
            AssertError(e, QcowErrorKind.Corrupt, "Snapshot");
        }

        [SkippableFact]
        public void SnapshotTableUnaligned()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = MakeImage(dir);
            Qemu.Img("snapshot", "-c", "s1", path);
            ulong offset = FilePatch.ReadU64(path, SnapshotOffset);
            FilePatch.U64(path, SnapshotOffset, offset + 24);
            AssertError(OpenAndReadAll(path), QcowErrorKind.Corrupt, "Snapshot table", "aligned");
        }

        [SkippableFact]
        public void UnknownIncompatibleFeatureBit()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = MakeImage(dir);
            FilePatch.U64(path, Incompatible, 1UL << 9);
            AssertError(OpenAndReadAll(path), QcowErrorKind.Unsupported, "incompatible feature", "bit 9");
        }

        [SkippableFact]
        public void UnknownIncompatibleFeatureNamedByTheFeatureTable()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = MakeImage(dir);
            // Rename the feature table's entry for incompatible bit 4 to bit 7 "frobnication", then set bit 7.
            var bytes = File.ReadAllBytes(path);
            int entry = -1;
            for (int i = Qcow2HeaderLayout.V3End; i + Qcow2HeaderLayout.FeatureNameEntryLength < 65536; i++)
                if (bytes[i + Qcow2HeaderLayout.FeatureNameType] == 0 && bytes[i + Qcow2HeaderLayout.FeatureNameBit] == 4 &&
                    System.Text.Encoding.ASCII.GetString(bytes, i + Qcow2HeaderLayout.FeatureNameText, 8) == "extended") { entry = i; break; }
            Assert.True(entry > 0, "feature name table entry not found");
            var patch = new byte[Qcow2HeaderLayout.FeatureNameEntryLength];
            patch[Qcow2HeaderLayout.FeatureNameType] = 0;
            patch[Qcow2HeaderLayout.FeatureNameBit] = 7;
            System.Text.Encoding.ASCII.GetBytes("frobnication").CopyTo(patch, Qcow2HeaderLayout.FeatureNameText);
            FilePatch.Bytes(path, entry, patch);
            FilePatch.U64(path, Incompatible, 1UL << 7);
            AssertError(OpenAndReadAll(path), QcowErrorKind.Unsupported, "frobnication");
        }

        [SkippableFact]
        public void V3HeaderShorterThan104Bytes()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = MakeImage(dir);
            FilePatch.U32(path, HeaderLength, 96);
            AssertError(OpenAndReadAll(path), QcowErrorKind.Corrupt, "header_length 96", "104");
        }

        [SkippableFact]
        public void RefcountOrderAbove6()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = MakeImage(dir);
            FilePatch.U32(path, RefcountOrder, 7);
            AssertError(OpenAndReadAll(path), QcowErrorKind.Corrupt, "refcount_order 7");
        }

        [SkippableFact]
        public void BackingFileNameLongerThanTheSpecAllows()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string baseImg = MakeImage(dir, "base.qcow2");
            string path = dir.File("top.qcow2");
            Qemu.Img("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", path);
            FilePatch.U32(path, BackingSize, 2000);
            AssertError(OpenAndReadAll(path), QcowErrorKind.Corrupt, "2000", "1023");
        }

        [SkippableFact]
        public void BackingFileNameOffsetOutsideTheHeaderCluster()
        {
            Qemu.Require();
            using var dir = new TempDir();
            MakeImage(dir, "base.qcow2");
            string path = dir.File("top.qcow2");
            Qemu.Img("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", path);
            FilePatch.U64(path, BackingOffset, 70000);
            AssertError(OpenAndReadAll(path), QcowErrorKind.Corrupt, "backing file offset");
        }

        [SkippableFact]
        public void BackingLoopToItself()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = MakeImage(dir, "self.qcow2");
            Qemu.Img("rebase", "-u", "-f", "qcow2", "-b", "self.qcow2", "-F", "qcow2", path);
            AssertError(OpenAndReadAll(path), QcowErrorKind.Corrupt, "loop", "self.qcow2");
        }

        [SkippableFact]
        public void BackingLoopOfTwoImages()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string a = MakeImage(dir, "a.qcow2");
            string b = MakeImage(dir, "b.qcow2");
            Qemu.Img("rebase", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", a);
            Qemu.Img("rebase", "-u", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", b);
            AssertError(OpenAndReadAll(a), QcowErrorKind.Corrupt, "loop", "a.qcow2", "b.qcow2");
        }

        [SkippableTheory]
        [InlineData("json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"/etc/passwd\"}}", "JSON")]
        [InlineData("nbd://127.0.0.1:10809/export", "nbd")]
        [InlineData("http://example.com/disk.qcow2", "http")]
        public void ProtocolAndJsonBackingNamesAreRefused(string name, string word)
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = MakeImage(dir, "top.qcow2");
            Qemu.Img("rebase", "-u", "-f", "qcow2", "-b", name, "-F", "qcow2", path);
            AssertError(OpenAndReadAll(path), QcowErrorKind.Unsupported, word);
        }

        [SkippableFact]
        public void BackingFileWithoutFormatIsNotReadAsRaw()
        {
            Qemu.Require();
            using var dir = new TempDir();
            File.WriteAllBytes(dir.File("base.raw"), new byte[1 << 20]);
            string path = dir.File("top.qcow2");
            Qemu.Img("create", "-f", "qcow2", "-b", "base.raw", "-F", "raw", path, "1M");
            // Turn the backing format extension into an unknown one: the format is no longer recorded.
            var bytes = File.ReadAllBytes(path);
            int at = -1;
            for (int i = Qcow2HeaderLayout.V3End; i < 4096; i += Qcow2HeaderLayout.ExtensionAlignment) if (FilePatch.ReadU32(path, i) == Qcow2HeaderExtension.BackingFormat) { at = i; break; }
            Assert.True(at > 0);
            FilePatch.U32(path, at, 0x7E570001);
            AssertError(OpenAndReadAll(path), QcowErrorKind.WrongFormat, "no recorded format", "never reads");
        }

        [SkippableFact]
        public void MissingBackingFileIsNamed()
        {
            Qemu.Require();
            using var dir = new TempDir();
            MakeImage(dir, "base.qcow2");
            string path = dir.File("top.qcow2");
            Qemu.Img("create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", path);
            File.Delete(dir.File("base.qcow2"));
            AssertError(OpenAndReadAll(path), QcowErrorKind.NotFound, "base.qcow2", "does not exist");
        }

        [SkippableFact]
        public void EncryptedImageIsReportedAndReadingIsRefused()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = dir.File("enc.qcow2");
            // A fixed, short key-derivation time: with the default, qemu-img benchmarks the CPU first and
            // on a loaded machine can stop with "Unable to get accurate CPU usage"; only that is retried.
            string[] create = { "create", "-f", "qcow2", "--object", "secret,id=sec0,data=123456",
                "-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10", path, "4M" };
            for (int attempt = 1; ; attempt++)
            {
                var (code, stdout, stderr) = Qemu.TryRun("qemu-img", create);
                if (code == 0) break;
                if (attempt == 3 || !(stdout + stderr).Contains("Unable to get accurate CPU usage"))
                    throw new InvalidOperationException($"qemu-img {string.Join(" ", create)} failed ({code}): {stderr}{stdout}");
            }
            using (var disk = DiskImage.Open(path))
            {
                var info = Operations.ImageInspector.Describe(disk);
                Assert.True(info.Encrypted);
                Assert.Equal("luks", info.EncryptionFormat);
                Assert.Contains("FullDiskEncryption", info.HeaderExtensions);
            }
            AssertError(OpenAndReadAll(path), QcowErrorKind.Unsupported, "encrypted");
        }

        [SkippableFact]
        public void RandomHeaderBytesNeverCrashOrHang()
        {
            Qemu.Require();
            // Fuzz the header and the first tables of a small valid image: every outcome is either a
            // successful read or a QcowException; nothing else escapes, nothing hangs.
            using var dir = new TempDir();
            string good = MakeImage(dir, "good.qcow2");
            Qemu.Img("snapshot", "-c", "s1", good);
            var original = File.ReadAllBytes(good);
            var random = new Random(int.Parse(Environment.GetEnvironmentVariable("QCOWPS_FUZZ_SEED") ?? "12345"));
            for (int round = 0; round < int.Parse(Environment.GetEnvironmentVariable("QCOWPS_FUZZ_ROUNDS") ?? "300"); round++)
            {
                var bytes = (byte[])original.Clone();
                int flips = random.Next(1, 8);
                for (int i = 0; i < flips; i++)
                {
                    int at = random.Next(0, Math.Min(bytes.Length, round % 2 == 0 ? 112 : bytes.Length));
                    bytes[at] = (byte)random.Next(256);
                }
                string path = dir.File($"fuzz{round}.qcow2");
                File.WriteAllBytes(path, bytes);
                var task = Task.Run(() =>
                {
                    try
                    {
                        using var disk = DiskImage.Open(path, new OpenOptions { OpenBackingChain = false });
                        var buffer = new byte[65536];
                        long step = Math.Max(65536, disk.Length / 64);
                        for (long pos = 0; pos < disk.Length; pos += step)
                            disk.Read(pos, buffer, 0, (int)Math.Min(buffer.Length, disk.Length - pos));
                        foreach (var _ in ((Qcow2Image)disk).EnumerateClusters(0, Math.Min(disk.Length, 1L << 30), true)) { }
                        foreach (var s in ((Qcow2Image)disk).Snapshots)
                        {
                            using var view = ((Qcow2Image)disk).OpenSnapshot(s.Id);
                            view.Read(0, buffer, 0, (int)Math.Min(buffer.Length, view.Length));
                        }
                        ((Qcow2Image)disk).Check();
                    }
                    catch (QcowException) { }
                    // Writing into it: refused, or done without anything but QcowExceptions.
                    try
                    {
                        using var disk = DiskImage.Open(path, new OpenOptions { Writable = true, OpenBackingChain = false });
                        var data = new byte[70000];
                        disk.Write(Math.Max(0, Math.Min(disk.Length - data.Length, 12345)), data, 0, (int)Math.Min(data.Length, disk.Length));
                        disk.WriteZeroes(0, Math.Min(disk.Length, 65536));
                    }
                    catch (QcowException) { }
                });
                Assert.True(task.Wait(TimeSpan.FromSeconds(30)), $"round {round} hung");
                if (task.IsFaulted) throw new Xunit.Sdk.XunitException($"round {round}: {task.Exception.InnerException}");
                File.Delete(path);
            }
        }
    }
}

namespace QcowPS.Engine.Tests
{
}
