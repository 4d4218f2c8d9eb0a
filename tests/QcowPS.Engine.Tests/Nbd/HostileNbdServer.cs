using System;
using System.Collections.Generic;
using System.IO;
using System.Net.Sockets;
using System.Text;
using System.Threading;
using QcowPS.Engine.IO;
using QcowPS.Engine.Nbd;

namespace QcowPS.Engine.Tests.Nbd
{
    /// <summary>What a HostileNbdServer does wrong (Honest: nothing; FlipByte and Truncate: at a seeded byte of what it sends).</summary>
    public enum Hostility
    {
        Honest, FlipByte, Truncate, HugeSize, WrongCookie, DataOutsideRequest, DataLongerThanAsked, ZeroLengthExtent,
        UnknownContext, HugeOptionReply, UnknownChunkType, Stall, OverlappingChunks, ShortRead, OldServerExportNameOnly,
    }

    /// <summary>
    /// A tiny NBD server for one connection on a Unix socket, honest enough to get a client through the
    /// handshake and a few requests, then broken in the chosen way. Its export holds a known pattern.
    /// </summary>
    public sealed class HostileNbdServer : IDisposable
    {
        public const long ExportSize = 1 << 20;
        private readonly Socket _listener;
        private readonly Thread _thread;
        private readonly Hostility _mode;
        private readonly long _at;
        private long _sent;
        private readonly ManualResetEventSlim _stop = new ManualResetEventSlim(false);
        private Stream _stream;
        public string Uri { get; }
        public Exception ServerError { get; private set; }

        public HostileNbdServer(string socketPath, Hostility mode, long at = 0)
        {
            _mode = mode;
            _at = at;
            _listener = NbdListener.ListenUnix(socketPath, 1);
            Uri = NbdPeers.UnixUri(socketPath);
            _thread = new Thread(Serve) { IsBackground = true, Name = "hostile NBD server" };
            _thread.Start();
        }

        public static byte PatternByte(long offset) => (byte)(offset * 7 + (offset >> 9));

        private void Serve()
        {
            try
            {
                using var socket = _listener.Accept();
                socket.ReceiveTimeout = 15_000;
                socket.SendTimeout = 15_000;
                using (_stream = new NetworkStream(socket, false))
                {
                    Handshake();
                    Transmission();
                }
            }
            catch (Exception e) when (e is IOException || e is SocketException || e is ObjectDisposedException || e is EndOfStreamException || e is TruncatedException)
            {
                ServerError = e;
            }
        }

        private sealed class TruncatedException : Exception { }

        /// <summary>Every byte the server sends passes here, where FlipByte and Truncate act on the byte numbered _at.</summary>
        private void Send(byte[] data)
        {
            if (_mode == Hostility.FlipByte && _at >= _sent && _at < _sent + data.Length) data[_at - _sent] ^= 0x5A;
            if (_mode == Hostility.Truncate && _at >= _sent && _at < _sent + data.Length)
            {
                _stream.Write(data, 0, (int)(_at - _sent));
                throw new TruncatedException();
            }
            _sent += data.Length;
            _stream.Write(data, 0, data.Length);
        }

        private byte[] Receive(int n)
        {
            var b = new byte[n];
            for (int at = 0; at < n;)
            {
                int r = _stream.Read(b, at, n - at);
                if (r <= 0) throw new EndOfStreamException();
                at += r;
            }
            return b;
        }

        private static byte[] Be16(ushort v) { var b = new byte[2]; BigEndian.Put16(b, 0, v); return b; }
        private static byte[] Be32(uint v) { var b = new byte[4]; BigEndian.Put32(b, 0, v); return b; }
        private static byte[] Be64(ulong v) { var b = new byte[8]; BigEndian.Put64(b, 0, v); return b; }
        private static byte[] Concat(params byte[][] parts)
        {
            var list = new List<byte>();
            foreach (var p in parts) list.AddRange(p);
            return list.ToArray();
        }

        private void OptionReply(uint option, uint type, byte[] payload) =>
            Send(Concat(Be64(NbdProtocol.OptionReplyMagic), Be32(option), Be32(type),
                Be32(_mode == Hostility.HugeOptionReply ? 0x7FFFFFF0u : (uint)payload.Length), payload));

        private void Handshake()
        {
            Send(Concat(Be64(NbdProtocol.InitialMagic), Be64(NbdProtocol.OptionMagic), Be16((ushort)(NbdProtocol.FlagFixedNewstyle | NbdProtocol.FlagNoZeroes))));
            Receive(4);
            ulong size = _mode == Hostility.HugeSize ? 1UL << 63 : (ulong)ExportSize;
            ushort flags = NbdProtocol.FlagHasFlags | NbdProtocol.FlagReadOnly;
            while (true)
            {
                var header = Receive(NbdProtocol.OptionHeaderLength);
                uint option = BigEndian.U32(header, NbdProtocol.OptionCodeOffset);
                var data = Receive((int)BigEndian.U32(header, NbdProtocol.OptionLengthOffset));
                switch (option)
                {
                    case NbdProtocol.OptStructuredReply:
                        OptionReply(option, NbdProtocol.RepAck, new byte[0]);
                        break;
                    case NbdProtocol.OptSetMetaContext:
                        string name = _mode == Hostility.UnknownContext ? "evil:context" : NbdProtocol.ContextBaseAllocation;
                        OptionReply(option, NbdProtocol.RepMetaContext, Concat(Be32(1), Encoding.UTF8.GetBytes(name)));
                        OptionReply(option, NbdProtocol.RepAck, new byte[0]);
                        break;
                    case NbdProtocol.OptGo:
                        if (_mode == Hostility.OldServerExportNameOnly)
                        {
                            OptionReply(option, NbdProtocol.RepErrUnsup, new byte[0]);
                            break;
                        }
                        OptionReply(option, NbdProtocol.RepInfo, Concat(Be16(NbdProtocol.InfoExport), Be64(size), Be16(flags)));
                        OptionReply(option, NbdProtocol.RepAck, new byte[0]);
                        return;
                    case NbdProtocol.OptExportName:
                        Send(Concat(Be64(size), Be16(flags)));
                        return;
                    default:
                        OptionReply(option, NbdProtocol.RepErrUnsup, new byte[0]);
                        break;
                }
            }
        }

        private void Chunk(ushort flags, ushort type, ulong cookie, byte[] payload) =>
            Send(Concat(Be32(NbdProtocol.StructuredReplyMagic), Be16(flags), Be16(type), Be64(cookie), Be32((uint)payload.Length), payload));

        private byte[] Pattern(long offset, int length)
        {
            var b = new byte[length];
            for (int i = 0; i < length; i++) b[i] = PatternByte(offset + i);
            return b;
        }

        private void Transmission()
        {
            while (true)
            {
                var request = Receive(NbdProtocol.RequestHeaderLength);
                ushort type = BigEndian.U16(request, NbdProtocol.RequestTypeOffset);
                ulong cookie = BigEndian.U64(request, NbdProtocol.RequestCookieOffset);
                long offset = (long)BigEndian.U64(request, NbdProtocol.RequestOffsetOffset);
                int length = (int)BigEndian.U32(request, NbdProtocol.RequestLengthOffset);
                if (type == NbdProtocol.CmdDisc) return;
                if (_mode == Hostility.Stall) { _stop.Wait(20_000); return; }
                if (_mode == Hostility.WrongCookie) cookie += 1000;
                if (_mode == Hostility.OldServerExportNameOnly && type == NbdProtocol.CmdRead)
                {
                    // Structured replies were agreed, but a simple reply with the data is what old servers send.
                    Send(Concat(Be32(NbdProtocol.SimpleReplyMagic), Be32(0), Be64(cookie), Pattern(offset, length)));
                    continue;
                }
                switch (type)
                {
                    case NbdProtocol.CmdRead:
                        switch (_mode)
                        {
                            case Hostility.DataOutsideRequest:
                                Chunk(NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeOffsetData, cookie, Concat(Be64((ulong)(offset + length)), Pattern(offset, length)));
                                break;
                            case Hostility.DataLongerThanAsked:
                                Chunk(NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeOffsetData, cookie, Concat(Be64((ulong)offset), Pattern(offset, length + 4096)));
                                break;
                            case Hostility.UnknownChunkType:
                                Chunk(NbdProtocol.ReplyFlagDone, 77, cookie, Pattern(offset, 16));
                                break;
                            case Hostility.OverlappingChunks:
                                Chunk(0, NbdProtocol.ReplyTypeOffsetData, cookie, Concat(Be64((ulong)offset), Pattern(offset, length / 2 + 1)));
                                Chunk(NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeOffsetData, cookie, Concat(Be64((ulong)(offset + length / 2)), Pattern(offset + length / 2, length - length / 2)));
                                break;
                            case Hostility.ShortRead:
                                Chunk(NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeOffsetData, cookie, Concat(Be64((ulong)offset), Pattern(offset, length / 2)));
                                break;
                            default:
                                // Half data, half hole: both kinds of chunk are exercised.
                                int half = length / 2;
                                if (half > 0) Chunk(0, NbdProtocol.ReplyTypeOffsetData, cookie, Concat(Be64((ulong)offset), Pattern(offset, half)));
                                Chunk(NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeOffsetData, cookie, Concat(Be64((ulong)(offset + half)), Pattern(offset + half, length - half)));
                                break;
                        }
                        break;
                    case NbdProtocol.CmdBlockStatus:
                        uint first = _mode == Hostility.ZeroLengthExtent ? 0u : (uint)Math.Min(length, 65536);
                        var extents = Concat(Be32(1), Be32(first), Be32(0));
                        if (length > 65536) extents = Concat(extents, Be32((uint)(length - 65536)), Be32(NbdProtocol.StateHole | NbdProtocol.StateZero));
                        Chunk(NbdProtocol.ReplyFlagDone, NbdProtocol.ReplyTypeBlockStatus, cookie, extents);
                        break;
                    default:
                        Send(Concat(Be32(NbdProtocol.SimpleReplyMagic), Be32(NbdProtocol.EINVAL), Be64(cookie)));
                        break;
                }
            }
        }

        public void Dispose()
        {
            _stop.Set();
            try { _listener.Dispose(); } catch (ObjectDisposedException) { }
            try { _stream?.Dispose(); } catch (ObjectDisposedException) { }
            _thread.Join(TimeSpan.FromSeconds(30));
        }
    }
}
