using System;
using System.Diagnostics;
using System.Threading;
using QcowPS.Engine.Nbd;
using QcowPS.Engine.Tests.Infrastructure;
using Xunit;

namespace QcowPS.Engine.Tests.Nbd
{
    /// <summary>The hostile-server rounds measure the process's allocations, so nothing else may run beside them.</summary>
    [CollectionDefinition(nameof(HostileServerCollection), DisableParallelization = true)]
    public sealed class HostileServerCollection { }

    /// <summary>NBD URIs as nbd-uri.md defines them, and the client against a hostile server (no peers needed).</summary>
    [Collection(nameof(HostileServerCollection))]
    public class NbdClientTests
    {
        [Theory]
        [InlineData("nbd://example.com/disk", "example.com", 10809, "disk")]
        [InlineData("nbd://example.com/", "example.com", 10809, "")]
        [InlineData("nbd://example.com", "example.com", 10809, "")]
        [InlineData("nbd://example.com//disk", "example.com", 10809, "/disk")]
        [InlineData("nbd://example.com/hello%20world", "example.com", 10809, "hello world")]
        [InlineData("nbd://example.com:1234/x", "example.com", 1234, "x")]
        [InlineData("nbd://[::1]:5000/x", "::1", 5000, "x")]
        [InlineData("NBD://127.0.0.1/%C3%A9t%C3%A9", "127.0.0.1", 10809, "été")]
        public void TcpUrisParseAsTheSpecTabulates(string text, string host, int port, string export)
        {
            var uri = NbdUri.Parse(text);
            Assert.False(uri.IsUnix);
            Assert.False(uri.RequiresTls);
            Assert.Equal(host, uri.Host);
            Assert.Equal(port, uri.Port);
            Assert.Equal(export, uri.ExportName);
        }

        [Fact]
        public void UnixAndTlsUrisCarryTheirSocketAndCertificates()
        {
            var unix = NbdUri.Parse("nbd+unix:///disk?socket=/tmp/a%20b.sock");
            Assert.True(unix.IsUnix);
            Assert.Equal("/tmp/a b.sock", unix.Socket);
            Assert.Equal("disk", unix.ExportName);
            var tls = NbdUri.Parse("nbds+unix:///?socket=s&tls-certificates=/etc/pki/qemu&tls-hostname=h&x-timeout=2.5");
            Assert.True(tls.RequiresTls);
            Assert.Equal("/etc/pki/qemu", tls.TlsCertificates);
            Assert.Equal("h", tls.TlsHostname);
            Assert.Equal(TimeSpan.FromSeconds(2.5), tls.Timeout);
            Assert.True(NbdUri.Parse("nbds://h/e?tls-verify-peer=0").RequiresTls);
        }

        [Theory]
        [InlineData("nbd+unix:///disk", "socket=")]
        [InlineData("nbd+unix://host/disk?socket=/s", "names no host")]
        [InlineData("nbd://host/disk?socket=/s", "socket= belongs")]
        [InlineData("nbd:///disk", "needs a host")]
        [InlineData("nbd://host:0/x", "port")]
        [InlineData("nbd://host:99999/x", "port")]
        [InlineData("nbd://host:12ab/x", "port")]
        [InlineData("nbd://host/x?bogus=1", "'bogus' is not known")]
        [InlineData("nbd://host/bad%2", "two hex digits")]
        [InlineData("nbd://host/a%00b", "NUL")]
        [InlineData("nbd://host/x?tls-certificates=/c", "TLS parameters need a TLS scheme")]
        [InlineData("nbd://host/x?x-timeout=-1", "x-timeout")]
        [InlineData("nbd+unix:///?socket=%00/abstract", "abstract")]
        [InlineData("nbd://host/x#frag", "fragment")]
        [InlineData("nbd+unix:///?socket=a&socket=b", "twice")]
        public void UrisTheSpecRejectsAreRefusedNamingTheProblem(string text, string why)
        {
            var e = Assert.Throws<QcowException>(() => NbdUri.Parse(text));
            Assert.Equal(QcowErrorKind.InvalidArgument, e.Kind);
            Assert.Contains(why, e.Message);
            Assert.Contains(text, e.Message);
        }

        [Theory]
        [InlineData("disk.qcow2", false)]
        [InlineData("C:\\images\\x.qcow2", false)]
        [InlineData("http://host/x", false)]
        [InlineData("nbd://h/x", true)]
        [InlineData("nbds+unix:///?socket=s", true)]
        public void OnlyTheNbdSchemesAreUris(string text, bool isUri) => Assert.Equal(isUri, NbdUri.IsNbdUri(text));

        /// <summary>One round against a hostile server: connect, block status, reads; returns what was thrown, checking time and memory.</summary>
        private static Exception Round(Hostility mode, long at = 0)
        {
            using var dir = new TempDir();
            using var server = new HostileNbdServer(dir.File("h.sock"), mode, at);
            long allocated = GC.GetTotalAllocatedBytes(true);
            var watch = Stopwatch.StartNew();
            Exception thrown = null;
            try
            {
                using var disk = NbdDisk.Open(server.Uri + "&x-timeout=2", false);
                var buffer = new byte[256 * 1024];
                disk.GetExtent(0, disk.Length);
                disk.Read(4096, buffer, 0, buffer.Length);
                for (int i = 0; i < buffer.Length; i++)
                    if (buffer[i] != HostileNbdServer.PatternByte(4096 + i) && mode == Hostility.Honest)
                        Assert.Fail($"byte {4096 + i} read wrong from an honest server");
            }
            catch (Exception e)
            {
                thrown = e;
            }
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(15), $"{mode}@{at}: the client took {watch.Elapsed}");
            long used = GC.GetTotalAllocatedBytes(true) - allocated;
            Assert.True(used < 64L << 20, $"{mode}@{at}: the client allocated {used} bytes");
            if (thrown != null && !(thrown is NbdException))
                Assert.Fail($"{mode}@{at}: {thrown.GetType().Name} instead of an NbdException: {thrown}");
            if (thrown != null) Assert.Contains(server.Uri, thrown.Message);
            return thrown;
        }

        [Fact]
        public void AnHonestServerAndAnOldOneThatKnowsOnlyExportNameAreRead()
        {
            Assert.Null(Round(Hostility.Honest));
            Assert.Null(Round(Hostility.OldServerExportNameOnly));
        }

        [Theory]
        [InlineData(Hostility.HugeSize, NbdFailure.ProtocolViolation, "2^63")]
        [InlineData(Hostility.WrongCookie, NbdFailure.ProtocolViolation, "cookie")]
        [InlineData(Hostility.DataOutsideRequest, NbdFailure.ProtocolViolation, "outside")]
        [InlineData(Hostility.DataLongerThanAsked, NbdFailure.ProtocolViolation, "OFFSET_DATA")]
        [InlineData(Hostility.ZeroLengthExtent, NbdFailure.ProtocolViolation, "does not advance")]
        [InlineData(Hostility.UnknownContext, NbdFailure.ProtocolViolation, "evil:context")]
        [InlineData(Hostility.HugeOptionReply, NbdFailure.ProtocolViolation, "option reply")]
        [InlineData(Hostility.UnknownChunkType, NbdFailure.ProtocolViolation, "unknown type")]
        [InlineData(Hostility.OverlappingChunks, NbdFailure.ProtocolViolation, "overlaps")]
        [InlineData(Hostility.ShortRead, NbdFailure.ProtocolViolation, "covers")]
        [InlineData(Hostility.Stall, NbdFailure.Timeout, "did not answer")]
        public void EachProtocolBreakIsAClearErrorNamingTheServer(Hostility mode, NbdFailure failure, string words)
        {
            var e = Assert.IsType<NbdException>(Round(mode));
            Assert.Equal(failure, e.Failure);
            Assert.Contains(words, e.Message);
        }

        [Fact]
        public void SeededByteFlipsAndCutsEndInSuccessOrAClearErrorWithinBounds()
        {
            var random = new Random(1234);
            int errors = 0;
            for (int round = 0; round < 60; round++)
            {
                // The first few hundred bytes are the handshake and the first replies' headers: aim there mostly.
                long at = round % 3 == 0 ? random.Next(0, 300 * 1024) : random.Next(0, 200);
                var mode = round % 2 == 0 ? Hostility.FlipByte : Hostility.Truncate;
                if (Round(mode, at) != null) errors++;
            }
            Assert.True(errors > 10, $"only {errors} of 60 damaged conversations failed; the damage is not reaching the client");
        }
    }
}
