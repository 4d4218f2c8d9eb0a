using System;
using System.IO;
using System.Security.Cryptography;
using System.Text;
using QcowPS.Engine.Guest;
using QcowPS.Engine.Guest.FileSystems;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;
using static System.Buffers.Binary.BinaryPrimitives;

namespace QcowPS.Engine.Tests.Guest
{
    /// <summary>
    /// Optimize-QcowImage's engine on NTFS volumes made by mkntfs and ntfscp, then damaged by hand in
    /// one way each: every refusal leaves the qcow2 file byte-identical and names its reason, and the
    /// untouched volume beside it is optimized (so the refusal comes from the damage, not from NTFS).
    /// ntfs-3g is the oracle where it has an opinion (ntfsinfo refuses a dirty volume).
    /// </summary>
    public class NtfsOptimizeTests
    {
        private static readonly string[] Tools = { "mkntfs", "ntfscp", "ntfsinfo", "ntfswipe" };

        /// <summary>
        /// A 32 MiB raw NTFS volume (mkntfs -f -F) holding a 1 MiB file, its free clusters filled with
        /// 0xAA by ntfswipe (so a qcow2 of it stores them), then any extra root files given.
        /// </summary>
        private static string MakeVolume(TempDir dir, params (string Name, byte[] Content)[] extra)
        {
            string raw = dir.File("ntfs.raw");
            using (var f = new FileStream(raw, FileMode.Create)) f.SetLength(32 << 20);
            GuestTools.Run("mkntfs", "-q", "-F", "-f", raw);
            var files = new System.Collections.Generic.List<(string, byte[])> { ("data.bin", Random(1 << 20, 1)) };
            files.AddRange(extra);
            for (int i = 0; i < files.Count; i++)
            {
                var (name, content) = files[i];
                if (i == 1) GuestTools.Run("ntfswipe", "-q", "--unused", "--bytes", "0xAA", raw);
                string host = dir.File("host-" + name);
                File.WriteAllBytes(host, content);
                GuestTools.Run("ntfscp", "-f", raw, host, name);
            }
            if (files.Count == 1) GuestTools.Run("ntfswipe", "-q", "--unused", "--bytes", "0xAA", raw);
            return raw;
        }

        private static byte[] Random(int length, int seed)
        {
            var b = new byte[length];
            new Random(seed).NextBytes(b);
            return b;
        }

        /// <summary>Converts the raw volume to qcow2, optimizes it, and returns the one result and whether the file changed.</summary>
        private static (QcowOptimizeResult Result, bool Changed) Optimize(TempDir dir, string raw)
        {
            string qcow = dir.File("ntfs.qcow2");
            File.Delete(qcow);
            Qemu.Img("convert", "-f", "raw", "-O", "qcow2", raw, qcow);
            string before = Hash(qcow);
            QcowOptimizeResult result;
            using (var disk = DiskImage.Open(qcow, new OpenOptions { Writable = true }))
            {
                var results = Sparsifier.Optimize(disk, dryRun: false);
                Assert.Single(results);
                result = results[0];
            }
            return (result, Hash(qcow) != before);
        }

        private static string Hash(string path)
        {
            using var f = File.OpenRead(path);
            return Convert.ToHexString(SHA256.HashData(f));
        }

        private static void AssertRefused(TempDir dir, string raw, string reason)
        {
            var (result, changed) = Optimize(dir, raw);
            Assert.Equal(Sparsifier.Skipped, result.Action);
            Assert.Equal("ntfs", result.Type);
            Assert.Contains(reason, result.Reason);
            Assert.False(changed, "a refused NTFS volume's image must stay byte-identical");
        }

        private static void AssertOptimized(TempDir dir, string raw)
        {
            var (result, changed) = Optimize(dir, raw);
            Assert.True(result.Action == Sparsifier.Optimized, $"expected Optimized, got {result.Action}: {result.Reason}");
            Assert.True(changed);
        }

        [SkippableFact]
        public void AnUntouchedVolumeIsOptimized()
        {
            GuestTools.Require(Tools);
            using var dir = new TempDir();
            AssertOptimized(dir, MakeVolume(dir));
        }

        [SkippableFact]
        public void ADirtyVolumeFlagIsRefusedAndNtfs3gAgrees()
        {
            GuestTools.Require(Tools);
            using var dir = new TempDir();
            string raw = MakeVolume(dir);
            var ntfs = new NtfsImagePatcher(raw);
            long info = ntfs.ResidentValueOffset(NtfsFileSystem.VolumeRecord, NtfsFileSystem.VolumeInformationAttribute);
            int within = (int)(info - ntfs.RecordOffset(NtfsFileSystem.VolumeRecord)) + NtfsFileSystem.VolumeFlagsField;
            var flags = ntfs.Read(info + NtfsFileSystem.VolumeFlagsField, 2);
            WriteUInt16LittleEndian(flags, (ushort)(ReadUInt16LittleEndian(flags) | NtfsFileSystem.VolumeIsDirty));
            ntfs.WriteMirrored(NtfsFileSystem.VolumeRecord, within, flags);
            // ntfs-3g refuses to open it ("scheduled for check") and, forced, shows the flag.
            Assert.NotEqual(0, GuestTools.TryRun("ntfsinfo", "-m", raw).exitCode);
            Assert.Contains("DIRTY", GuestTools.Run("ntfsinfo", "-m", "-f", raw));
            AssertRefused(dir, raw, "marked dirty");
        }

        [SkippableFact]
        public void AVersionOtherThan3IsRefused()
        {
            GuestTools.Require(Tools);
            using var dir = new TempDir();
            string raw = MakeVolume(dir);
            var ntfs = new NtfsImagePatcher(raw);
            long info = ntfs.ResidentValueOffset(NtfsFileSystem.VolumeRecord, NtfsFileSystem.VolumeInformationAttribute);
            int within = (int)(info - ntfs.RecordOffset(NtfsFileSystem.VolumeRecord)) + NtfsFileSystem.VolumeMajorVersionField;
            ntfs.WriteMirrored(NtfsFileSystem.VolumeRecord, within, new byte[] { 4 });
            AssertRefused(dir, raw, "NTFS version 4.1");
        }

        /// <summary>
        /// Both restart pages of $LogFile as NTFS leaves them with one log client in use: a page
        /// protected by its update sequence, a restart area whose flags are given, and a client record.
        /// </summary>
        private static byte[] RestartPages(ushort restartFlags, long logFileSize)
        {
            const int page = 4096, ra = 0x30, clientArray = 0x40, usaOffset = NtfsLogFile.RestartPageHeaderSize;
            const int usaCount = page / NtfsLogFile.BlockSize + 1;
            var both = new byte[2 * page];
            for (int n = 0; n < 2; n++)
            {
                var p = new byte[page];
                Encoding.ASCII.GetBytes(NtfsLogFile.RestartMagic).CopyTo(p, 0);
                WriteUInt16LittleEndian(p.AsSpan(NtfsLogFile.UsaOffsetField), usaOffset);
                WriteUInt16LittleEndian(p.AsSpan(NtfsLogFile.UsaCountField), usaCount);
                WriteUInt32LittleEndian(p.AsSpan(NtfsLogFile.SystemPageSizeField), page);
                WriteUInt32LittleEndian(p.AsSpan(NtfsLogFile.LogPageSizeField), page);
                WriteUInt16LittleEndian(p.AsSpan(NtfsLogFile.RestartAreaOffsetField), ra);
                WriteUInt16LittleEndian(p.AsSpan(NtfsLogFile.MinorVersionField), 1);
                WriteUInt16LittleEndian(p.AsSpan(NtfsLogFile.MajorVersionField), 1);
                WriteInt64LittleEndian(p.AsSpan(ra + NtfsLogFile.CurrentLsnField), 0x1000 + n);
                WriteUInt16LittleEndian(p.AsSpan(ra + NtfsLogFile.LogClientsField), 1);
                WriteUInt16LittleEndian(p.AsSpan(ra + NtfsLogFile.ClientFreeListField), NtfsLogFile.NoClient);
                WriteUInt16LittleEndian(p.AsSpan(ra + NtfsLogFile.ClientInUseListField), 0);
                WriteUInt16LittleEndian(p.AsSpan(ra + NtfsLogFile.RestartFlagsField), restartFlags);
                int bits = 0;
                for (long s = logFileSize; s != 0; s >>= 1) bits++;
                WriteUInt32LittleEndian(p.AsSpan(ra + NtfsLogFile.SeqNumberBitsField), (uint)(67 - bits));
                WriteUInt16LittleEndian(p.AsSpan(ra + NtfsLogFile.RestartAreaLengthField), clientArray + NtfsLogFile.ClientRecordSize);
                WriteUInt16LittleEndian(p.AsSpan(ra + NtfsLogFile.ClientArrayOffsetField), clientArray);
                WriteInt64LittleEndian(p.AsSpan(ra + NtfsLogFile.FileSizeField), logFileSize);
                WriteUInt16LittleEndian(p.AsSpan(ra + NtfsLogFile.LogRecordHeaderLengthField), 0x30);
                WriteUInt16LittleEndian(p.AsSpan(ra + NtfsLogFile.LogPageDataOffsetField), 0x40);
                int client = ra + clientArray;
                WriteUInt16LittleEndian(p.AsSpan(client + NtfsLogFile.PrevClientField), NtfsLogFile.NoClient);
                WriteUInt16LittleEndian(p.AsSpan(client + NtfsLogFile.NextClientField), NtfsLogFile.NoClient);
                // The update sequence: each stride's last word moves into the array and the sequence number takes its place.
                WriteUInt16LittleEndian(p.AsSpan(usaOffset), 1);
                for (int i = 1; i < usaCount; i++)
                {
                    int tail = i * NtfsLogFile.BlockSize - 2;
                    p[usaOffset + 2 * i] = p[tail];
                    p[usaOffset + 2 * i + 1] = p[tail + 1];
                    WriteUInt16LittleEndian(p.AsSpan(tail), 1);
                }
                p.CopyTo(both, n * page);
            }
            return both;
        }

        private static string WithRestartPages(TempDir dir, ushort restartFlags)
        {
            string raw = MakeVolume(dir);
            var ntfs = new NtfsImagePatcher(raw);
            long a = ntfs.AttributeOffset(NtfsFileSystem.LogFileRecord, NtfsFileSystem.DataAttribute);
            long size = ReadInt64LittleEndian(ntfs.Read(a + NtfsFileSystem.DataSizeField, 8));
            ntfs.Write(ntfs.FirstLcn(NtfsFileSystem.LogFileRecord) * ntfs.ClusterBytes, RestartPages(restartFlags, size));
            return raw;
        }

        /// <summary>ntfs-3g's verdict on the journal: a read-write mount (ntfscp into a copy) succeeds only when its $LogFile checks find it clean.</summary>
        private static (bool Mounted, string Output) Ntfs3gMountsReadWrite(TempDir dir, string raw)
        {
            string copy = dir.File("oracle.raw");
            File.Copy(raw, copy, overwrite: true);
            var (code, stdout, stderr) = GuestTools.TryRun("ntfscp", copy, dir.File("host-data.bin"), "probe.bin");
            File.Delete(copy);
            return (code == 0, stdout + stderr);
        }

        [SkippableFact]
        public void ALogFileWithAClientInUseAndNoCleanFlagIsRefusedAsNtfs3gRefusesIt()
        {
            GuestTools.Require(Tools);
            using var dir = new TempDir();
            string raw = WithRestartPages(dir, 0);
            var (mounted, output) = Ntfs3gMountsReadWrite(dir, raw);
            Assert.False(mounted, "ntfs-3g must refuse a read-write mount of a journal needing replay");
            Assert.Contains("unclean", output);
            AssertRefused(dir, raw, "not shut down cleanly");
        }

        [SkippableFact]
        public void ALogFileWhoseRestartAreaSaysCleanIsAcceptedAsNtfs3gAcceptsIt()
        {
            GuestTools.Require(Tools);
            using var dir = new TempDir();
            string raw = WithRestartPages(dir, NtfsLogFile.RestartVolumeIsClean);
            // ntfs-3g mounting it shows the crafted restart pages pass its consistency checks, not only ours.
            var (mounted, output) = Ntfs3gMountsReadWrite(dir, raw);
            Assert.True(mounted, output);
            AssertOptimized(dir, raw);
        }

        [SkippableFact]
        public void ALogFileWithNeitherRestartPagesNorEmptyMagicIsRefused()
        {
            GuestTools.Require(Tools);
            using var dir = new TempDir();
            string raw = MakeVolume(dir);
            var ntfs = new NtfsImagePatcher(raw);
            ntfs.Write(ntfs.FirstLcn(NtfsFileSystem.LogFileRecord) * ntfs.ClusterBytes, new byte[8192]);
            AssertRefused(dir, raw, "no valid restart page");
        }

        [SkippableTheory]
        [InlineData("hibr")]
        [InlineData("HIBR")]
        [InlineData("wake")]
        [InlineData("WAKE")]
        public void AHibernatedWindowsIsRefused(string signature)
        {
            GuestTools.Require(Tools);
            using var dir = new TempDir();
            var header = new byte[64 << 10];
            Encoding.ASCII.GetBytes(signature).CopyTo(header, 0);
            AssertRefused(dir, MakeVolume(dir, ("hiberfil.sys", header)), $"begins with \"{signature}\"");
        }

        [SkippableFact]
        public void AHiberfilShorterThanItsHeaderIsRefused()
        {
            GuestTools.Require(Tools);
            using var dir = new TempDir();
            AssertRefused(dir, MakeVolume(dir, ("HIBERFIL.SYS", new byte[100])), "shorter than 4096 bytes");
        }

        [SkippableFact]
        public void AHiberfilOfZerosAmongManyRootFilesIsAccepted()
        {
            GuestTools.Require(Tools);
            using var dir = new TempDir();
            // Enough root entries that the root index spills into $INDEX_ALLOCATION blocks, which are read too.
            var files = new (string, byte[])[41];
            for (int i = 0; i < 40; i++) files[i] = ($"file-with-a-longish-name-{i:D3}.txt", new byte[10]);
            files[40] = ("hiberfil.sys", new byte[64 << 10]);
            AssertOptimized(dir, MakeVolume(dir, files));
        }

        [SkippableFact]
        public void AHibernationSignatureInAnIndexBlockIsFound()
        {
            GuestTools.Require(Tools);
            using var dir = new TempDir();
            var files = new (string, byte[])[41];
            for (int i = 0; i < 40; i++) files[i] = ($"file-with-a-longish-name-{i:D3}.txt", new byte[10]);
            var header = new byte[64 << 10];
            Encoding.ASCII.GetBytes("hibr").CopyTo(header, 0);
            files[40] = ("hiberfil.sys", header);
            string raw = MakeVolume(dir, files);
            var ntfs = new NtfsImagePatcher(raw);
            ntfs.AttributeOffset(NtfsFileSystem.RootRecord, NtfsFileSystem.IndexAllocationAttribute);  // throws unless the index spilled
            AssertRefused(dir, raw, "hibernated");
        }

        [SkippableFact]
        public void ABitmapThatMarksTheMftFreeIsRefused()
        {
            GuestTools.Require(Tools);
            using var dir = new TempDir();
            string raw = MakeVolume(dir);
            var ntfs = new NtfsImagePatcher(raw);
            long bitmap = ntfs.FirstLcn(NtfsFileSystem.BitmapRecord) * ntfs.ClusterBytes;
            long at = bitmap + ntfs.MftLcn / 8;
            var b = ntfs.Read(at, 1);
            b[0] &= (byte)~(1 << (int)(ntfs.MftLcn % 8));
            ntfs.Write(at, b);
            AssertRefused(dir, raw, $"marks cluster {ntfs.MftLcn} of $MFT free");
        }

        /// <summary>Replaces the run list of $Bitmap's $DATA (8 bytes in an mkntfs volume) and, when given, its last VCN and allocated size.</summary>
        private static string WithBitmapRuns(TempDir dir, Func<NtfsImagePatcher, byte[]> runs, long? clusters = null)
        {
            string raw = MakeVolume(dir);
            var ntfs = new NtfsImagePatcher(raw);
            long a = ntfs.AttributeOffset(NtfsFileSystem.BitmapRecord, NtfsFileSystem.DataAttribute);
            var list = runs(ntfs);
            Assert.True(list.Length <= 8);
            ntfs.Write(a + ReadUInt16LittleEndian(ntfs.Read(a + NtfsFileSystem.RunListOffsetField, 2)), list);
            if (clusters is long n)
            {
                var v = new byte[8];
                WriteInt64LittleEndian(v, n - 1);
                ntfs.Write(a + NtfsFileSystem.HighestVcnField, v);
                WriteInt64LittleEndian(v, n * ntfs.ClusterBytes);
                ntfs.Write(a + NtfsFileSystem.AllocatedSizeField, v);
            }
            return raw;
        }

        [SkippableFact]
        public void ABitmapRunOutsideTheVolumeIsRefused()
        {
            GuestTools.Require(Tools);
            using var dir = new TempDir();
            // One cluster at LCN 0x7FFFFF: far past the volume's 8191 clusters.
            string raw = WithBitmapRuns(dir, _ => new byte[] { 0x31, 0x01, 0xFF, 0xFF, 0x7F, 0x00 });
            AssertRefused(dir, raw, "points outside the volume");
        }

        [SkippableFact]
        public void ABitmapRunListThatLoopsBackOnItselfIsRefused()
        {
            GuestTools.Require(Tools);
            using var dir = new TempDir();
            // Two runs, the second at relative offset 0: the same cluster read twice as two halves of the map.
            string raw = WithBitmapRuns(dir, ntfs =>
            {
                long lcn = ntfs.FirstLcn(NtfsFileSystem.BitmapRecord);
                return new byte[] { 0x21, 0x01, (byte)lcn, (byte)(lcn >> 8), 0x11, 0x01, 0x00, 0x00 };
            }, clusters: 2);
            AssertRefused(dir, raw, "uses cluster");
        }

        [SkippableFact]
        public void ABitmapRunListWithoutAnEndIsRefused()
        {
            GuestTools.Require(Tools);
            using var dir = new TempDir();
            // Runs of one cluster each, one cluster apart, filling the list to the end of the attribute with no terminator.
            string raw = WithBitmapRuns(dir, ntfs =>
            {
                long lcn = ntfs.FirstLcn(NtfsFileSystem.BitmapRecord);
                return new byte[] { 0x21, 0x01, (byte)lcn, (byte)(lcn >> 8), 0x11, 0x01, 0x02, 0x11 };
            });
            AssertRefused(dir, raw, "$Bitmap's run list");
        }

        /// <summary>
        /// Random bytes over the system records, the $LogFile restart pages and the root index never
        /// crash the reader or make it hang: each try ends in a result (dry run, so nothing is written).
        /// </summary>
        [SkippableFact]
        public void RandomDamageToSystemStructuresNeverCrashes()
        {
            GuestTools.Require(Tools);
            using var dir = new TempDir();
            string raw = MakeVolume(dir);
            var ntfs = new NtfsImagePatcher(raw);
            long mft = ntfs.RecordOffset(0), log = ntfs.FirstLcn(NtfsFileSystem.LogFileRecord) * ntfs.ClusterBytes;
            var pristineMft = ntfs.Read(mft, 16 * ntfs.RecordBytes);
            var pristineLog = ntfs.Read(log, 8192);
            var random = new Random(13);
            int skipped = 0;
            for (int round = 0; round < 300; round++)
            {
                bool inLog = round % 3 == 0;
                var damaged = (byte[])(inLog ? pristineLog : pristineMft).Clone();
                for (int k = 0; k < 1 + random.Next(8); k++) damaged[random.Next(damaged.Length)] = (byte)random.Next(256);
                using (var f = new FileStream(raw, FileMode.Open, FileAccess.Write)) { f.Position = inLog ? log : mft; f.Write(damaged); }
                using (var disk = DiskImage.Open(raw, new OpenOptions { Format = ImageFormat.Raw }))
                {
                    var results = Sparsifier.Optimize(disk, dryRun: true);
                    Assert.Single(results);
                    if (results[0].Action == Sparsifier.Skipped) skipped++;
                    else Assert.Equal(Sparsifier.WouldOptimize, results[0].Action);
                }
                using (var f = new FileStream(raw, FileMode.Open, FileAccess.Write)) { f.Position = inLog ? log : mft; f.Write(inLog ? pristineLog : pristineMft); }
            }
            Assert.True(skipped > 0, "some of the damage must have been noticed");
        }
    }
}
