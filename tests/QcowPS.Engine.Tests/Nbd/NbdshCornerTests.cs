using QcowPS.Engine.Tests.Infrastructure;
using Xunit;

namespace QcowPS.Engine.Tests.Nbd
{
    /// <summary>libnbd's corners through nbdsh: option mode, structured replies off, DF reads, REQ_ONE.</summary>
    public class NbdshCornerTests
    {
        private static (NbdPeers.QemuNbd qemu, string ours, Engine.Nbd.NbdServer server) Serve(TempDir dir)
        {
            NbdPeers.Require("nbdsh");
            string image = dir.File("corners.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", image, "4M");
            Qemu.Io("-f", "qcow2", "-c", "write -P 0x41 0 64k", "-c", "write -P 0x42 1M 64k", image);
            var server = NbdPeers.Serve(dir, image);
            return (null, NbdPeers.UnixUri(dir.File("ours.sock")), server);
        }

        [SkippableFact]
        public void OptionModeListsInfoAndContexts()
        {
            using var dir = new TempDir();
            var (_, uri, server) = Serve(dir);
            using (server)
            {
                string output = NbdPeers.WithLog(server, () => NbdPeers.Nbdsh(
                    "h.set_opt_mode(True)\n" +
                    $"h.connect_uri('{uri}')\n" +
                    "names = []\n" +
                    "def on_export(name, desc):\n    names.append(name)\n    return 0\n" +
                    "h.opt_list(on_export)\n" +
                    "print('list', names)\n" +
                    "h.set_export_name('')\n" +
                    "h.opt_info()\n" +
                    "print('size', h.get_size(), 'ro', h.is_read_only())\n" +
                    "ctx = []\n" +
                    "def on_ctx(name):\n    ctx.append(name)\n    return 0\n" +
                    "h.opt_list_meta_context(on_ctx)\n" +
                    "print('ctx', sorted(ctx))\n" +
                    "h.opt_go()\n" +
                    "print('go', h.aio_is_ready())\n"));
                Assert.Contains("list ['']", output);
                Assert.Contains($"size {4 << 20} ro True", output);
                Assert.Contains("ctx ['base:allocation', 'qemu:allocation-depth']", output);
                Assert.Contains("go True", output);
            }
        }

        [SkippableFact]
        public void DfReadsAndReqOneBlockStatus()
        {
            using var dir = new TempDir();
            var (_, uri, server) = Serve(dir);
            using (server)
            {
                string output = NbdPeers.WithLog(server, () => NbdPeers.Nbdsh(
                    "import nbd\n" +
                    "h.add_meta_context('base:allocation')\n" +
                    $"h.connect_uri('{uri}')\n" +
                    "print('df', h.can_df())\n" +
                    "chunks = []\n" +
                    "def on_chunk(sub, off, status, err):\n    chunks.append((off, status, len(sub)))\n    return 0\n" +
                    "buf = h.pread_structured(128 * 1024, 0, on_chunk, nbd.CMD_FLAG_DF)\n" +
                    "print('data', buf[:1].hex(), buf[65536:65537].hex(), len(buf))\n" +
                    "print('chunks', chunks)\n" +
                    "ext = []\n" +
                    "def on_extents(meta, off, entries, err):\n    ext.append(list(entries))\n    return 0\n" +
                    "h.block_status(2 * 1024 * 1024, 0, on_extents, nbd.CMD_FLAG_REQ_ONE)\n" +
                    "print('reqone', ext)\n"));
                Assert.Contains("df True", output);
                Assert.Contains($"data 41 00 {128 * 1024}", output);
                // DF: one data chunk for the whole read, though its second half is a hole.
                Assert.Contains($"chunks [(0, 1, {128 * 1024})]", output);
                // REQ_ONE: one extent, the first run only (64 KiB of data, status 0).
                Assert.Contains("reqone [[65536, 0]]", output);
            }
        }

        [SkippableFact]
        public void StructuredRepliesOffStillReads()
        {
            using var dir = new TempDir();
            var (_, uri, server) = Serve(dir);
            using (server)
            {
                string output = NbdPeers.WithLog(server, () => NbdPeers.Nbdsh(
                    "h.set_request_structured_replies(False)\n" +
                    $"h.connect_uri('{uri}')\n" +
                    "print('structured', h.get_structured_replies_negotiated(), 'df', h.can_df())\n" +
                    "buf = h.pread(4096, 1024 * 1024)\n" +
                    "print('data', buf[:1].hex(), len(buf))\n"));
                Assert.Contains("structured False df False", output);
                Assert.Contains("data 42 4096", output);
            }
        }
    }
}
