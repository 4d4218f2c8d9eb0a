using System;
using System.IO;
using System.Net;
using QcowPS.Engine.Nbd;
using QcowPS.Engine.Operations;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;

namespace QcowPS.Engine.Tests.Nbd
{
    /// <summary>
    /// The client's TLS (nbds://, nbds+unix://) against nbdkit --tls=require and our own server with a
    /// certificate, with certificates made by openssl at test time: the right CA connects, reads and
    /// writes; a wrong CA, a wrong host name, a plaintext-only server, are refused with errors naming why.
    /// </summary>
    public class NbdClientTlsTests
    {
        private const long ExportSize = 1 << 20;

        private static string TlsUnixUri(PeerServer server, string caFolder, string extra = "") =>
            $"nbds+unix:///?socket={server.Socket}&tls-certificates={caFolder}{extra}";

        /// <summary>A 2 MiB qcow2 with a pattern written by qemu-io, and the raw file qemu-img reads from it.</summary>
        private static (string image, string expected) PatternImage(TempDir dir, byte pattern, long offset, int length)
        {
            string image = dir.File("served.qcow2"), expected = dir.File("expected.raw");
            Qemu.Img("create", "-f", "qcow2", image, "2M");
            Qemu.IoCommands(image, "qcow2", $"write -P 0x{pattern:x2} {offset} {length}");
            Qemu.Img("convert", "-f", "qcow2", "-O", "raw", image, expected);
            return (image, expected);
        }

        /// <summary>qemu-nbd serving image over TLS with the server folder's certificate; verify-peer=on (its default) asks for a client certificate.</summary>
        private static PeerServer TlsQemuNbd(TempDir dir, string image, TestCertificates certificates, bool verifyPeer, string id = "tls0") =>
            PeerServer.QemuNbd(dir, image, "qcow2", false,
                "--object", $"tls-creds-x509,id={id},dir={certificates.ServerFolder},endpoint=server" + (verifyPeer ? "" : ",verify-peer=off"), "--tls-creds", id);

        /// <summary>Reads the whole export over TLS with the certificates of caFolder and checks it equals the expected raw file.</summary>
        private static void AssertReadsOverTlsAs(TempDir dir, PeerServer server, string caFolder, string expected)
        {
            string ours = dir.File("ours-" + Guid.NewGuid().ToString("N").Substring(0, 6) + ".raw");
            using (var disk = DiskImage.Open(TlsUnixUri(server, caFolder)))
            {
                Assert.True(((NbdDisk)disk).Client.Tls);
                RawExporter.Export(disk, 0, disk.Length, ours, false);
            }
            Assert.Equal(File.ReadAllBytes(expected), File.ReadAllBytes(ours));
        }

        private static PeerServer TlsNbdkit(TempDir dir, TestCertificates certificates) =>
            PeerServer.Nbdkit(dir, "--tls=require", "--tls-certificates=" + certificates.ServerFolder, "memory", ExportSize.ToString());

        [SkippableFact]
        public void WithTheRightCaNbdkitIsWrittenAndReadOverTlsAsNbdcopySeesIt()
        {
            NbdPeers.Require("nbdkit", "nbdcopy");
            using var dir = new TempDir();
            var certificates = new TestCertificates(dir);
            using var server = TlsNbdkit(dir, certificates);
            string uri = TlsUnixUri(server, certificates.GoodCaFolder);

            var model = new byte[ExportSize];
            var random = new Random(11);
            using (var disk = NbdDisk.Open(uri, writable: true))
            {
                Assert.True(disk.Client.Tls);
                Assert.Contains(NbdProtocol.ContextBaseAllocation, disk.Client.Contexts);
                foreach (var (offset, length) in new[] { (4097L, 70_000), (300_000L, 4096), (ExportSize - 513, 513) })
                {
                    var data = new byte[length];
                    random.NextBytes(data);
                    disk.Write(offset, data, 0, length);
                    Array.Copy(data, 0, model, offset, length);
                }
                disk.Flush();
                var back = new byte[ExportSize];
                disk.Read(0, back, 0, back.Length);
                Assert.Equal(model, back);
            }

            // The oracle: libnbd's nbdcopy reads the export over TLS with the same CA.
            string copied = dir.File("nbdcopy.raw");
            NbdPeers.Run("nbdcopy", uri, copied);
            Assert.Equal(model, File.ReadAllBytes(copied));

            // A conversion from the TLS export reads back as the model.
            string converted = dir.File("converted.qcow2");
            using (var disk = DiskImage.Open(uri))
                ImageConverter.Convert(disk, converted, new ConvertOptions { Threads = 2 });
            var (code, stdout, stderr) = Qemu.TryRun("qemu-img", "compare", "-f", "qcow2", "-F", "raw", converted, copied);
            Assert.True(code == 0, $"qemu-img compare: {stdout}{stderr}");
        }

        [SkippableFact]
        public void AServerCertificateFromAnotherCaIsRefusedNamingTheCaFile()
        {
            NbdPeers.Require("nbdkit");
            using var dir = new TempDir();
            var certificates = new TestCertificates(dir);
            using var server = TlsNbdkit(dir, certificates);
            var e = Assert.Throws<NbdException>(() => NbdDisk.Open(TlsUnixUri(server, certificates.WrongCaFolder), false));
            Assert.Equal(NbdFailure.Refused, e.Failure);
            Assert.Contains("not signed by the CA in '" + Path.Combine(certificates.WrongCaFolder, "ca-cert.pem") + "'", e.Message);
            Assert.Contains(server.Socket, e.Message);
        }

        [SkippableFact]
        public void APlaintextOnlyServerAskedForTlsIsRefusedAndAPlainUriToATlsServerIsToldToUseNbds()
        {
            NbdPeers.Require("nbdkit");
            using var dir = new TempDir();
            var certificates = new TestCertificates(dir);
            using (var plain = PeerServer.Nbdkit(dir, "memory", ExportSize.ToString()))
            {
                var e = Assert.Throws<NbdException>(() => NbdDisk.Open(TlsUnixUri(plain, certificates.GoodCaFolder), false));
                Assert.Equal(NbdFailure.Refused, e.Failure);
                Assert.Contains("refused TLS", e.Message);
                Assert.Contains("nbds+unix:// requires it", e.Message);
            }
            using (var tls = TlsNbdkit(dir, certificates))
            {
                var e = Assert.Throws<NbdException>(() => NbdDisk.Open(tls.Uri, false));
                Assert.Equal(NbdFailure.Refused, e.Failure);
                Assert.Contains("requires TLS", e.Message);
            }
        }

        [SkippableFact]
        public void QemuNbdWithTlsCredsIsReadAsQemuImgReadsTheFile()
        {
            NbdPeers.Require("qemu-nbd");
            using var dir = new TempDir();
            var certificates = new TestCertificates(dir);
            var (image, expected) = PatternImage(dir, 0x3c, 12288, 200000);
            // verify-peer=off: a qemu-nbd server otherwise asks for a client certificate, which the CA-only folder has not.
            using var server = TlsQemuNbd(dir, image, certificates, verifyPeer: false);
            AssertReadsOverTlsAs(dir, server, certificates.GoodCaFolder, expected);
            var e = Assert.Throws<NbdException>(() => NbdDisk.Open(TlsUnixUri(server, certificates.WrongCaFolder), false));
            Assert.Equal(NbdFailure.Refused, e.Failure);

            // qemu-nbd's default asks for a client certificate: the error says that is the likely cause.
            using var strict = TlsQemuNbd(dir, image, certificates, verifyPeer: true, id: "tls1");
            var noClientCertificate = Assert.Throws<NbdException>(() => NbdDisk.Open(TlsUnixUri(strict, certificates.GoodCaFolder), false));
            Assert.Equal(NbdFailure.ConnectionFailed, noClientCertificate.Failure);
            Assert.Contains("client certificate", noClientCertificate.Message);
        }

        [SkippableFact]
        public void NbdkitWithTlsVerifyPeerTakesTheClientCertificateAndRefusesNoneOrAForeignOne()
        {
            NbdPeers.Require("nbdkit");
            using var dir = new TempDir();
            var certificates = new TestCertificates(dir);
            using var server = PeerServer.Nbdkit(dir, "--tls=require", "--tls-certificates=" + certificates.ServerFolder, "--tls-verify-peer", "memory", ExportSize.ToString());

            var data = new byte[70_000];
            new Random(5).NextBytes(data);
            using (var disk = NbdDisk.Open(TlsUnixUri(server, certificates.ClientFolder), writable: true))
            {
                Assert.True(disk.Client.Tls);
                disk.Write(4096, data, 0, data.Length);
                disk.Flush();
                var back = new byte[data.Length];
                disk.Read(4096, back, 0, back.Length);
                Assert.Equal(data, back);
            }

            var none = Assert.Throws<NbdException>(() => NbdDisk.Open(TlsUnixUri(server, certificates.GoodCaFolder), false));
            Assert.Contains(server.Socket, none.Message);
            Assert.Contains("client-cert.pem", none.Message);
            var foreign = Assert.Throws<NbdException>(() => NbdDisk.Open(TlsUnixUri(server, certificates.ForeignClientFolder), false));
            Assert.Contains("qcowps-client", foreign.Message);

            // A certificate without its key is named, not silently left out.
            string half = dir.File("half");
            Directory.CreateDirectory(half);
            File.Copy(Path.Combine(certificates.ClientFolder, "ca-cert.pem"), Path.Combine(half, "ca-cert.pem"));
            File.Copy(Path.Combine(certificates.ClientFolder, "client-cert.pem"), Path.Combine(half, "client-cert.pem"));
            var missing = Assert.Throws<QcowException>(() => NbdDisk.Open(TlsUnixUri(server, half), false));
            Assert.Equal(QcowErrorKind.NotFound, missing.Kind);
            Assert.Contains("client-key.pem", missing.Message);
        }

        [SkippableFact]
        public void QemuNbdWithVerifyPeerOnTakesTheClientCertificateAndRefusesNone()
        {
            NbdPeers.Require("qemu-nbd");
            using var dir = new TempDir();
            var certificates = new TestCertificates(dir);
            var (image, expected) = PatternImage(dir, 0x5a, 8192, 300000);
            // qemu-nbd's default: verify-peer=on, so a client certificate signed by the folder's CA is required.
            using var server = TlsQemuNbd(dir, image, certificates, verifyPeer: true);
            AssertReadsOverTlsAs(dir, server, certificates.ClientFolder, expected);
            var none = Assert.Throws<NbdException>(() => NbdDisk.Open(TlsUnixUri(server, certificates.GoodCaFolder), false));
            Assert.Contains("client-cert.pem", none.Message);
            Assert.Throws<NbdException>(() => NbdDisk.Open(TlsUnixUri(server, certificates.ForeignClientFolder), false));
        }

        [SkippableFact]
        public void OurOwnTlsServerOverTcpIsReadWithTheRightCaAndHostAndRefusedOtherwise()
        {
            Qemu.Require();
            using var dir = new TempDir();
            var certificates = new TestCertificates(dir);
            string image = dir.File("served.qcow2");
            Qemu.Img("create", "-f", "qcow2", image, "4M");
            Qemu.IoCommands(image, "qcow2", "write -P 0x5a 65536 131072");
            using var certificate = certificates.LoadServerCertificate();
            var disk = DiskImage.Open(image);
            using var server = NbdServer.ListenTcp(new[] { new NbdExport("", disk, true, owner: disk) }, IPAddress.Loopback, 0,
                new NbdServerOptions { Certificate = certificate });
            string Uri(string host, string ca, string extra = "") => $"nbds://{host}:{server.Port}/?tls-certificates={ca}{extra}";

            foreach (string host in new[] { "localhost", "127.0.0.1" })
            {
                using var client = NbdDisk.Open(Uri(host, certificates.GoodCaFolder), false);
                Assert.True(client.Client.Tls);
                var data = new byte[3 * 65536];
                client.Read(0, data, 0, data.Length);
                for (int i = 0; i < data.Length; i++)
                    Assert.True(data[i] == (i >= 65536 && i < 3 * 65536 ? 0x5a : 0), $"byte {i} through {host}");
            }

            var wrongCa = Assert.Throws<NbdException>(() => NbdDisk.Open(Uri("localhost", certificates.WrongCaFolder), false));
            Assert.Equal(NbdFailure.Refused, wrongCa.Failure);
            Assert.Contains("not signed by the CA", wrongCa.Message);

            var wrongHost = Assert.Throws<NbdException>(() => NbdDisk.Open(Uri("localhost", certificates.GoodCaFolder, "&tls-hostname=other.example"), false));
            Assert.Equal(NbdFailure.Refused, wrongHost.Failure);
            Assert.Contains("is not for host 'other.example'", wrongHost.Message);

            // tls-verify-peer=0 is qemu's verify-peer=off: encrypted, the certificate not checked.
            using (var unchecked_ = NbdDisk.Open(Uri("localhost", certificates.WrongCaFolder, "&tls-verify-peer=0"), false))
                Assert.True(unchecked_.Client.Tls);
        }
    }
}
