using System;
using System.Diagnostics;
using System.IO;
using System.Threading;
using System.Linq;
using QcowPS.Engine.Qcow2;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;

namespace QcowPS.Engine.Tests
{
    public class LockingTests
    {
        [Fact]
        public void SecondWriterIsRefusedWithInUse()
        {
            using var dir = new TempDir();
            string path = dir.File("a.qcow2");
            Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = 1 << 20 });
            using var first = DiskImage.Open(path, new OpenOptions { Writable = true });
            var e = Assert.Throws<QcowException>(() => DiskImage.Open(path, new OpenOptions { Writable = true }));
            Assert.Equal(QcowErrorKind.InUse, e.Kind);
            Assert.Contains("in use", e.Message);
            // A reader of a file being written is refused too (it could see a half-written state).
            Assert.Equal(QcowErrorKind.InUse, Assert.Throws<QcowException>(() => DiskImage.Open(path)).Kind);
            // Readers share with each other once the writer is gone.
            first.Dispose();
            using var r1 = DiskImage.Open(path);
            using var r2 = DiskImage.Open(path);
            Assert.Equal(QcowErrorKind.InUse, Assert.Throws<QcowException>(() => DiskImage.Open(path, new OpenOptions { Writable = true })).Kind);
        }

        [SkippableFact]
        public void QemuSeesOurLockAndWeSeeQemus()
        {
            Qemu.Require();
            using var dir = new TempDir();
            string path = dir.File("a.qcow2");
            Qcow2Creator.Create(path, new Qcow2CreateOptions { Size = 1 << 20 });
            using (DiskImage.Open(path, new OpenOptions { Writable = true }))
            {
                var (code, _, stderr) = Qemu.TryRun("qemu-img", "info", path);
                Assert.NotEqual(0, code);
                Assert.Contains("lock", stderr);
            }
            // qemu-io holds the image open for writing while its sleep command runs. We wait until its
            // write lock (byte 101) shows in /proc/locks before probing: our probe takes the write lock
            // itself and would make a qemu-io that opens the image later fail.
            var psi = new ProcessStartInfo("qemu-io") { RedirectStandardOutput = true, UseShellExecute = false };
            foreach (var a in new[] { "-f", "qcow2", "-c", "sleep 30000", path }) psi.ArgumentList.Add(a);
            using var qemu = Process.Start(psi);
            try
            {
                var deadline = DateTime.UtcNow.AddSeconds(25);
                while (!HoldsQemuWriteLock(path) && DateTime.UtcNow < deadline && !qemu.HasExited) Thread.Sleep(50);
                Assert.True(HoldsQemuWriteLock(path), "qemu-io did not take the image's write lock");
                QcowException e = null;
                try { DiskImage.Open(path, new OpenOptions { Writable = true }).Dispose(); }
                catch (QcowException x) { e = x; }
                Assert.NotNull(e);
                Assert.Equal(QcowErrorKind.InUse, e.Kind);
                // Force-share reading (qemu-img -U) still works.
                using var shared = DiskImage.Open(path, new OpenOptions { Lock = IO.LockMode.None });
                Assert.Equal(1 << 20, shared.Length);
            }
            finally
            {
                if (!qemu.HasExited) qemu.Kill();
                qemu.WaitForExit(10000);
            }
        }

        /// <summary>Whether some process holds an OFD lock on byte 101 (QEMU's "write" permission) of the file, per /proc/locks (adjacent locked bytes show as one range).</summary>
        private static bool HoldsQemuWriteLock(string path)
        {
            var stat = Qemu.TryRun("stat", "-c", "%i", path);
            string inode = ":" + stat.stdout.Trim() + " ";
            foreach (var line in System.IO.File.ReadAllLines("/proc/locks"))
            {
                if (!line.Contains("OFDLCK") || !line.Contains(inode)) continue;
                var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);  // ... maj:min:inode start end
                if (long.TryParse(fields[^2], out long start) && long.TryParse(fields[^1], out long end) && start <= 101 && 101 <= end)
                    return true;
            }
            return false;
        }
    }

}

namespace QcowPS.Engine.Tests
{
}

namespace QcowPS.Engine.Tests
{
}
