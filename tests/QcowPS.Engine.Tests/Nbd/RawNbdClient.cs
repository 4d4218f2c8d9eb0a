using System;
using System.IO;
using System.Net.Sockets;
using System.Text;
using QcowPS.Engine.IO;
using P = QcowPS.Engine.Nbd.NbdProtocol;

namespace QcowPS.Engine.Tests.Nbd
{
    /// <summary>
    /// A byte-level NBD client for hostile-client tests: it sends exactly what a test says, well formed or
    /// not, and reads replies with a timeout so that no test can hang on a server that stays silent.
    /// </summary>
    public sealed class RawNbdClient : IDisposable
    {
        public const int ReceiveTimeoutMilliseconds = 15_000;

        private readonly Socket _socket;
        private readonly NetworkStream _stream;

        public RawNbdClient(string socketPath, int receiveTimeout = ReceiveTimeoutMilliseconds)
        {
            _socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            _socket.Connect(new UnixDomainSocketEndPoint(socketPath));
            _socket.ReceiveTimeout = receiveTimeout;
            _socket.SendTimeout = receiveTimeout;
            _stream = new NetworkStream(_socket, true);
        }

        public Socket Socket => _socket;

        /// <summary>Reads the greeting and answers with the fixed-newstyle and no-zeroes flags; returns the handshake flags.</summary>
        public ushort Handshake()
        {
            var greeting = ReadExactly(P.GreetingLength);
            if (BigEndian.U64(greeting, P.GreetingInitialMagicOffset) != P.InitialMagic) throw new InvalidDataException("bad greeting");
            var flags = new byte[P.ClientFlagsLength];
            BigEndian.Put32(flags, 0, P.FlagClientFixedNewstyle | P.FlagClientNoZeroes);
            Send(flags);
            return BigEndian.U16(greeting, P.GreetingHandshakeFlagsOffset);
        }

        /// <summary>An option header with any length field, followed by whatever payload (which may disagree with it).</summary>
        public void SendOption(uint option, uint lengthField, byte[] payload = null)
        {
            var header = new byte[P.OptionHeaderLength];
            BigEndian.Put64(header, P.OptionMagicOffset, P.OptionMagic);
            BigEndian.Put32(header, P.OptionCodeOffset, option);
            BigEndian.Put32(header, P.OptionLengthOffset, lengthField);
            Send(header);
            if (payload != null && payload.Length > 0) Send(payload);
        }

        public (uint option, uint type, byte[] data) ReadOptionReply()
        {
            var header = ReadExactly(P.OptionReplyHeaderLength);
            if (BigEndian.U64(header, P.OptionReplyMagicOffset) != P.OptionReplyMagic) throw new InvalidDataException("bad option reply magic");
            uint length = BigEndian.U32(header, P.OptionReplyLengthOffset);
            if (length > 1 << 20) throw new InvalidDataException($"option reply of {length} bytes");
            return (BigEndian.U32(header, P.OptionReplyOptionOffset), BigEndian.U32(header, P.OptionReplyTypeOffset), ReadExactly((int)length));
        }

        /// <summary>NBD_OPT_GO for an export, no info requests; reads replies up to the final one and returns its type.</summary>
        public uint Go(string export = "")
        {
            var name = Encoding.UTF8.GetBytes(export);
            var payload = new byte[4 + name.Length + 2];
            BigEndian.Put32(payload, 0, (uint)name.Length);
            Buffer.BlockCopy(name, 0, payload, 4, name.Length);
            SendOption(P.OptGo, (uint)payload.Length, payload);
            while (true)
            {
                var (_, type, _) = ReadOptionReply();
                if (type != P.RepInfo) return type;
            }
        }

        public void SendRequest(ushort flags, ushort type, ulong cookie, ulong offset, uint length, byte[] payload = null)
        {
            var header = new byte[P.RequestHeaderLength];
            BigEndian.Put32(header, P.RequestMagicOffset, P.RequestMagic);
            BigEndian.Put16(header, P.RequestFlagsOffset, flags);
            BigEndian.Put16(header, P.RequestTypeOffset, type);
            BigEndian.Put64(header, P.RequestCookieOffset, cookie);
            BigEndian.Put64(header, P.RequestOffsetOffset, offset);
            BigEndian.Put32(header, P.RequestLengthOffset, length);
            Send(header);
            if (payload != null && payload.Length > 0) Send(payload);
        }

        /// <summary>A simple reply (no structured replies were negotiated): the error and cookie, then dataLength bytes of data when the error is 0.</summary>
        public (uint error, ulong cookie, byte[] data) ReadSimpleReply(int dataLength = 0)
        {
            var header = ReadExactly(16);
            if (BigEndian.U32(header, 0) != P.SimpleReplyMagic) throw new InvalidDataException($"bad reply magic 0x{BigEndian.U32(header, 0):X}");
            uint error = BigEndian.U32(header, 4);
            ulong cookie = BigEndian.U64(header, 8);
            return (error, cookie, error == 0 && dataLength > 0 ? ReadExactly(dataLength) : Array.Empty<byte>());
        }

        public void Send(byte[] data) => _stream.Write(data, 0, data.Length);

        public byte[] ReadExactly(int count)
        {
            var buffer = new byte[count];
            for (int done = 0; done < count;)
            {
                int n = _stream.Read(buffer, done, count - done);
                if (n <= 0) throw new EndOfStreamException($"the server closed the connection after {done} of {count} bytes");
                done += n;
            }
            return buffer;
        }

        /// <summary>True when the server closed the connection (EOF) within the receive timeout; anything it still sends first is read and dropped.</summary>
        public bool ServerCloses()
        {
            var scratch = new byte[4096];
            try
            {
                while (true)
                {
                    int n = _stream.Read(scratch, 0, scratch.Length);
                    if (n <= 0) return true;
                }
            }
            catch (IOException e) when (e.InnerException is SocketException s)
            {
                return s.SocketErrorCode == SocketError.ConnectionReset;
            }
        }

        public void Dispose() => _stream.Dispose();
    }
}
