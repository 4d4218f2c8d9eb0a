namespace QcowPS.Engine.Nbd
{
    /// <summary>
    /// The NBD wire constants, shared by the server and the client: magics, option and reply types,
    /// command types and flags, handshake and transmission flags, error codes, info types,
    /// structured-reply types, metadata context names, and the offsets and lengths of every fixed
    /// header. Values and names follow the NBD protocol specification (doc/proto.md of the NBD
    /// project; ../shared/reference/nbd-proto.md) and QEMU's docs/interop/nbd.rst for the
    /// <c>qemu:</c> namespace. All integers on the wire are big-endian.
    /// </summary>
    public static class NbdProtocol
    {
        // ---------------------------------------------------------------- magics

        /// <summary>'NBDMAGIC': the first 8 bytes the server sends, oldstyle and newstyle alike.</summary>
        public const ulong InitialMagic = 0x4e42444d41474943UL;
        /// <summary>'IHAVEOPT': the newstyle greeting's second magic and the magic of every option request.</summary>
        public const ulong OptionMagic = 0x49484156454F5054UL;
        /// <summary>The oldstyle greeting's second magic (cliserv_magic); we never speak oldstyle.</summary>
        public const ulong OldstyleMagic = 0x00420281861253UL;
        /// <summary>Magic of every option reply in fixed newstyle negotiation.</summary>
        public const ulong OptionReplyMagic = 0x3e889045565a9UL;
        public const uint RequestMagic = 0x25609513;
        public const uint SimpleReplyMagic = 0x67446698;
        public const uint StructuredReplyMagic = 0x668e33ef;
        /// <summary>Experimental EXTENDED_HEADERS extension (64-bit lengths); not negotiated by QcowPS.</summary>
        public const uint ExtendedRequestMagic = 0x21e41c71;
        /// <summary>Experimental EXTENDED_HEADERS extension; not negotiated by QcowPS.</summary>
        public const uint ExtendedReplyMagic = 0x6e8a278c;

        /// <summary>The IANA-assigned NBD port, used when a URI names no port.</summary>
        public const int DefaultPort = 10809;

        // ---------------------------------------------------------------- handshake flags (server, 16 bits)

        public const ushort FlagFixedNewstyle = 1 << 0;
        public const ushort FlagNoZeroes = 1 << 1;

        // ---------------------------------------------------------------- client flags (32 bits)

        public const uint FlagClientFixedNewstyle = 1u << 0;
        public const uint FlagClientNoZeroes = 1u << 1;

        // ---------------------------------------------------------------- transmission flags (16 bits)

        public const ushort FlagHasFlags = 1 << 0;
        public const ushort FlagReadOnly = 1 << 1;
        public const ushort FlagSendFlush = 1 << 2;
        public const ushort FlagSendFua = 1 << 3;
        public const ushort FlagRotational = 1 << 4;
        public const ushort FlagSendTrim = 1 << 5;
        public const ushort FlagSendWriteZeroes = 1 << 6;
        public const ushort FlagSendDf = 1 << 7;
        public const ushort FlagCanMultiConn = 1 << 8;
        public const ushort FlagSendResize = 1 << 9;
        public const ushort FlagSendCache = 1 << 10;
        public const ushort FlagSendFastZero = 1 << 11;
        /// <summary>Experimental EXTENDED_HEADERS extension.</summary>
        public const ushort FlagBlockStatusPayload = 1 << 12;

        // ---------------------------------------------------------------- options (32 bits)

        public const uint OptExportName = 1;
        public const uint OptAbort = 2;
        public const uint OptList = 3;
        /// <summary>Withdrawn by the spec; answered like any unknown option.</summary>
        public const uint OptPeekExport = 4;
        public const uint OptStartTls = 5;
        public const uint OptInfo = 6;
        public const uint OptGo = 7;
        public const uint OptStructuredReply = 8;
        public const uint OptListMetaContext = 9;
        public const uint OptSetMetaContext = 10;
        /// <summary>Experimental EXTENDED_HEADERS extension.</summary>
        public const uint OptExtendedHeaders = 11;

        // ---------------------------------------------------------------- option reply types (32 bits)

        public const uint RepAck = 1;
        public const uint RepServer = 2;
        public const uint RepInfo = 3;
        public const uint RepMetaContext = 4;

        /// <summary>Every option error reply type has bit 31 set.</summary>
        public const uint RepErrorBit = 1u << 31;
        public const uint RepErrUnsup = RepErrorBit + 1;
        public const uint RepErrPolicy = RepErrorBit + 2;
        public const uint RepErrInvalid = RepErrorBit + 3;
        public const uint RepErrPlatform = RepErrorBit + 4;
        public const uint RepErrTlsReqd = RepErrorBit + 5;
        public const uint RepErrUnknown = RepErrorBit + 6;
        public const uint RepErrShutdown = RepErrorBit + 7;
        public const uint RepErrBlockSizeReqd = RepErrorBit + 8;
        public const uint RepErrTooBig = RepErrorBit + 9;
        /// <summary>Experimental EXTENDED_HEADERS extension.</summary>
        public const uint RepErrExtHeaderReqd = RepErrorBit + 10;

        // ---------------------------------------------------------------- info types (16 bits, NBD_REP_INFO)

        public const ushort InfoExport = 0;
        public const ushort InfoName = 1;
        public const ushort InfoDescription = 2;
        public const ushort InfoBlockSize = 3;

        // ---------------------------------------------------------------- commands (16 bits)

        public const ushort CmdRead = 0;
        public const ushort CmdWrite = 1;
        public const ushort CmdDisc = 2;
        public const ushort CmdFlush = 3;
        public const ushort CmdTrim = 4;
        public const ushort CmdCache = 5;
        public const ushort CmdWriteZeroes = 6;
        public const ushort CmdBlockStatus = 7;
        /// <summary>Experimental RESIZE extension; not served by QcowPS.</summary>
        public const ushort CmdResize = 8;

        // ---------------------------------------------------------------- command flags (16 bits)

        public const ushort CmdFlagFua = 1 << 0;
        public const ushort CmdFlagNoHole = 1 << 1;
        public const ushort CmdFlagDf = 1 << 2;
        public const ushort CmdFlagReqOne = 1 << 3;
        public const ushort CmdFlagFastZero = 1 << 4;
        /// <summary>Experimental EXTENDED_HEADERS extension.</summary>
        public const ushort CmdFlagPayloadLen = 1 << 5;

        // ---------------------------------------------------------------- structured reply flags and types (16 bits)

        public const ushort ReplyFlagDone = 1 << 0;

        public const ushort ReplyTypeNone = 0;
        public const ushort ReplyTypeOffsetData = 1;
        public const ushort ReplyTypeOffsetHole = 2;
        public const ushort ReplyTypeBlockStatus = 5;
        /// <summary>Experimental EXTENDED_HEADERS extension.</summary>
        public const ushort ReplyTypeBlockStatusExt = 6;
        /// <summary>Every error chunk type has bit 15 set.</summary>
        public const ushort ReplyTypeErrorBit = 1 << 15;
        public const ushort ReplyTypeError = ReplyTypeErrorBit + 1;
        public const ushort ReplyTypeErrorOffset = ReplyTypeErrorBit + 2;

        // ---------------------------------------------------------------- errors (32 bits, errno values)

        public const uint EPERM = 1;
        public const uint EIO = 5;
        public const uint ENOMEM = 12;
        public const uint EINVAL = 22;
        public const uint ENOSPC = 28;
        public const uint EOVERFLOW = 75;
        public const uint ENOTSUP = 95;
        public const uint ESHUTDOWN = 108;

        // ---------------------------------------------------------------- block status flags

        /// <summary>base:allocation: the extent is a hole (unallocated).</summary>
        public const uint StateHole = 1 << 0;
        /// <summary>base:allocation: the extent reads as zeroes.</summary>
        public const uint StateZero = 1 << 1;
        /// <summary>qemu:dirty-bitmap:NAME: the extent is dirty.</summary>
        public const uint StateDirty = 1 << 0;

        // ---------------------------------------------------------------- metadata contexts

        public const string ContextBaseAllocation = "base:allocation";
        /// <summary>Namespace prefix of the contexts the spec defines.</summary>
        public const string NamespaceBase = "base:";
        /// <summary>Namespace prefix of QEMU's contexts (a LIST_META_CONTEXT query for it lists them all).</summary>
        public const string NamespaceQemu = "qemu:";
        /// <summary>Which layer of the backing chain provides the data: 0 unallocated, 1 the top image, 2 its backing file, ...</summary>
        public const string ContextQemuAllocationDepth = "qemu:allocation-depth";
        /// <summary>Prefix of the per-bitmap contexts, followed by the bitmap's export name.</summary>
        public const string ContextQemuDirtyBitmapPrefix = "qemu:dirty-bitmap:";

        // ---------------------------------------------------------------- limits

        /// <summary>The spec's limit for any string (export name, description, context name, error message).</summary>
        public const int MaxStringLength = 4096;
        /// <summary>The block size constraints qemu-nbd advertises: minimum 1, preferred 4 KiB, maximum payload 32 MiB.</summary>
        public const uint BlockSizeMinimum = 1;
        public const uint BlockSizePreferred = 4096;
        public const uint BlockSizeMaximum = 32 * 1024 * 1024;
        /// <summary>A server SHOULD NOT send more than 2^20 extents in one block status chunk.</summary>
        public const int MaxBlockStatusExtents = 1 << 20;

        // ---------------------------------------------------------------- newstyle greeting (server)

        public const int GreetingInitialMagicOffset = 0;
        public const int GreetingOptionMagicOffset = 8;
        public const int GreetingHandshakeFlagsOffset = 16;
        public const int GreetingLength = 18;
        /// <summary>The client's reply to the greeting: 32 bits of client flags.</summary>
        public const int ClientFlagsLength = 4;

        // ---------------------------------------------------------------- option request header (client)

        public const int OptionMagicOffset = 0;
        public const int OptionCodeOffset = 8;
        public const int OptionLengthOffset = 12;
        public const int OptionHeaderLength = 16;

        // ---------------------------------------------------------------- option reply header (server)

        public const int OptionReplyMagicOffset = 0;
        public const int OptionReplyOptionOffset = 8;
        public const int OptionReplyTypeOffset = 12;
        public const int OptionReplyLengthOffset = 16;
        public const int OptionReplyHeaderLength = 20;

        // ---------------------------------------------------------------- NBD_OPT_EXPORT_NAME reply

        public const int ExportNameReplySizeOffset = 0;
        public const int ExportNameReplyFlagsOffset = 8;
        public const int ExportNameReplyLength = 10;
        /// <summary>Reserved zeroes after the export name reply unless NO_ZEROES was negotiated.</summary>
        public const int ExportNameReplyZeroesLength = 124;

        // ---------------------------------------------------------------- option payloads

        /// <summary>NBD_REP_INFO with NBD_INFO_EXPORT: type (2), size (8), transmission flags (2).</summary>
        public const int InfoExportLength = 12;
        public const int InfoExportSizeOffset = 2;
        public const int InfoExportFlagsOffset = 10;
        /// <summary>NBD_REP_INFO with NBD_INFO_BLOCK_SIZE: type (2), minimum (4), preferred (4), maximum (4).</summary>
        public const int InfoBlockSizeLength = 14;
        public const int InfoBlockSizeMinimumOffset = 2;
        public const int InfoBlockSizePreferredOffset = 6;
        public const int InfoBlockSizeMaximumOffset = 10;
        /// <summary>The 16-bit type that starts every NBD_REP_INFO payload and every requested info in INFO/GO.</summary>
        public const int InfoTypeLength = 2;
        /// <summary>NBD_REP_SERVER and the INFO/GO/META_CONTEXT requests start with a 32-bit name length.</summary>
        public const int NameLengthFieldLength = 4;
        /// <summary>INFO/GO: after the name, a 16-bit count of requested info types.</summary>
        public const int InfoRequestCountLength = 2;
        /// <summary>LIST/SET_META_CONTEXT: after the export name, a 32-bit count of queries, each a 32-bit length and a string.</summary>
        public const int MetaContextQueryCountLength = 4;
        /// <summary>NBD_REP_META_CONTEXT: a 32-bit context id, then the name.</summary>
        public const int MetaContextIdLength = 4;

        // ---------------------------------------------------------------- request header (client)

        public const int RequestMagicOffset = 0;
        public const int RequestFlagsOffset = 4;
        public const int RequestTypeOffset = 6;
        public const int RequestCookieOffset = 8;
        public const int RequestOffsetOffset = 16;
        public const int RequestLengthOffset = 24;
        public const int RequestHeaderLength = 28;

        // ---------------------------------------------------------------- simple reply header (server)

        public const int SimpleReplyMagicOffset = 0;
        public const int SimpleReplyErrorOffset = 4;
        public const int SimpleReplyCookieOffset = 8;
        public const int SimpleReplyHeaderLength = 16;

        // ---------------------------------------------------------------- structured reply chunk header (server)

        public const int StructuredReplyMagicOffset = 0;
        public const int StructuredReplyFlagsOffset = 4;
        public const int StructuredReplyTypeOffset = 6;
        public const int StructuredReplyCookieOffset = 8;
        public const int StructuredReplyLengthOffset = 16;
        public const int StructuredReplyHeaderLength = 20;

        // ---------------------------------------------------------------- structured reply payloads

        /// <summary>OFFSET_DATA: a 64-bit offset, then the data.</summary>
        public const int OffsetDataHeaderLength = 8;
        /// <summary>OFFSET_HOLE: a 64-bit offset and a 32-bit hole size.</summary>
        public const int OffsetHoleLength = 12;
        public const int OffsetHoleSizeOffset = 8;
        /// <summary>BLOCK_STATUS: a 32-bit context id, then descriptors.</summary>
        public const int BlockStatusHeaderLength = 4;
        /// <summary>A block status descriptor: 32-bit extent length, 32-bit status flags.</summary>
        public const int BlockStatusDescriptorLength = 8;
        /// <summary>ERROR chunks: 32-bit error, 16-bit message length, then the message.</summary>
        public const int ErrorChunkHeaderLength = 6;
        public const int ErrorChunkMessageLengthOffset = 4;
        /// <summary>ERROR_OFFSET chunks end with the 64-bit offset after the message.</summary>
        public const int ErrorOffsetFieldLength = 8;
    }
}
