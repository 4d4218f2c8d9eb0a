using System.IO;
using System.Security.Cryptography.X509Certificates;
using QcowPS.Engine.Tests.Infrastructure;

namespace QcowPS.Engine.Tests.Nbd
{
    /// <summary>
    /// X.509 material made with openssl at test time, in the folder layout of qemu's tls-creds-x509 and
    /// nbdkit's --tls-certificates: ServerFolder holds ca-cert.pem, server-cert.pem and server-key.pem
    /// (signed by the good CA, for localhost and 127.0.0.1); GoodCaFolder and WrongCaFolder hold only a
    /// ca-cert.pem each, what a client is given. ClientFolder adds client-cert.pem and client-key.pem
    /// signed by the good CA (what a server with verify-peer accepts); ForeignClientFolder the same signed
    /// by the wrong CA (refused), beside the good ca-cert.pem.
    /// </summary>
    public sealed class TestCertificates
    {
        public string ServerFolder { get; }
        public string GoodCaFolder { get; }
        public string WrongCaFolder { get; }
        public string ClientFolder { get; }
        public string ForeignClientFolder { get; }

        public TestCertificates(TempDir dir)
        {
            NbdPeers.Require("openssl");
            ServerFolder = Folder(dir, "server");
            GoodCaFolder = Folder(dir, "good-ca");
            WrongCaFolder = Folder(dir, "wrong-ca");
            string keys = Folder(dir, "ca-keys");

            MakeCa(Path.Combine(keys, "good-key.pem"), Path.Combine(GoodCaFolder, "ca-cert.pem"), "QcowPS test CA");
            MakeCa(Path.Combine(keys, "wrong-key.pem"), Path.Combine(WrongCaFolder, "ca-cert.pem"), "Some other CA");
            File.Copy(Path.Combine(GoodCaFolder, "ca-cert.pem"), Path.Combine(ServerFolder, "ca-cert.pem"));

            string csr = Path.Combine(keys, "server.csr"), ext = Path.Combine(keys, "server.ext");
            File.WriteAllText(ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
            NbdPeers.Run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-subj", "/CN=localhost", "-keyout", ServerKey, "-out", csr);
            NbdPeers.Run("openssl", "x509", "-req", "-in", csr, "-CA", Path.Combine(GoodCaFolder, "ca-cert.pem"),
                "-CAkey", Path.Combine(keys, "good-key.pem"), "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", ServerCert);

            ClientFolder = Folder(dir, "client");
            ForeignClientFolder = Folder(dir, "foreign-client");
            MakeClient(keys, ClientFolder, "good");
            MakeClient(keys, ForeignClientFolder, "wrong");
        }

        private void MakeClient(string keys, string folder, string ca)
        {
            File.Copy(Path.Combine(GoodCaFolder, "ca-cert.pem"), Path.Combine(folder, "ca-cert.pem"));
            string csr = Path.Combine(keys, ca + "-client.csr"), ext = Path.Combine(keys, "client.ext");
            File.WriteAllText(ext, "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n");
            NbdPeers.Run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-subj", "/CN=qcowps-client", "-keyout", Path.Combine(folder, "client-key.pem"), "-out", csr);
            NbdPeers.Run("openssl", "x509", "-req", "-in", csr, "-CA", Path.Combine(ca == "good" ? GoodCaFolder : WrongCaFolder, "ca-cert.pem"),
                "-CAkey", Path.Combine(keys, ca + "-key.pem"), "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", Path.Combine(folder, "client-cert.pem"));
        }

        public string ServerCert => Path.Combine(ServerFolder, "server-cert.pem");
        public string ServerKey => Path.Combine(ServerFolder, "server-key.pem");

        /// <summary>The server's certificate with its key, for NbdServerOptions.Certificate.</summary>
        public X509Certificate2 LoadServerCertificate() => X509Certificate2.CreateFromPemFile(ServerCert, ServerKey);

        private static void MakeCa(string key, string cert, string name) =>
            NbdPeers.Run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-days", "2", "-subj", "/CN=" + name, "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", key, "-out", cert);

        private static string Folder(TempDir dir, string name)
        {
            string path = dir.File(name);
            Directory.CreateDirectory(path);
            return path;
        }
    }
}
