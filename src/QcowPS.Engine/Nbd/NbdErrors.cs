namespace QcowPS.Engine.Nbd
{
    /// <summary>The errno names of the NBD error codes (the values are Linux's; the spec fixes them on the wire).</summary>
    public static class NbdErrors
    {
        public static string Name(uint error)
        {
            switch (error)
            {
                case NbdProtocol.EPERM: return "EPERM";
                case NbdProtocol.EIO: return "EIO";
                case NbdProtocol.ENOMEM: return "ENOMEM";
                case NbdProtocol.EINVAL: return "EINVAL";
                case NbdProtocol.ENOSPC: return "ENOSPC";
                case NbdProtocol.EOVERFLOW: return "EOVERFLOW";
                case NbdProtocol.ENOTSUP: return "ENOTSUP";
                case NbdProtocol.ESHUTDOWN: return "ESHUTDOWN";
                default: return "error " + error;
            }
        }

        /// <summary>What an option error reply (NBD_REP_ERR_*) means.</summary>
        public static string OptionErrorName(uint reply)
        {
            switch (reply)
            {
                case NbdProtocol.RepErrUnsup: return "NBD_REP_ERR_UNSUP";
                case NbdProtocol.RepErrPolicy: return "NBD_REP_ERR_POLICY";
                case NbdProtocol.RepErrInvalid: return "NBD_REP_ERR_INVALID";
                case NbdProtocol.RepErrPlatform: return "NBD_REP_ERR_PLATFORM";
                case NbdProtocol.RepErrTlsReqd: return "NBD_REP_ERR_TLS_REQD";
                case NbdProtocol.RepErrUnknown: return "NBD_REP_ERR_UNKNOWN";
                case NbdProtocol.RepErrShutdown: return "NBD_REP_ERR_SHUTDOWN";
                case NbdProtocol.RepErrBlockSizeReqd: return "NBD_REP_ERR_BLOCK_SIZE_REQD";
                case NbdProtocol.RepErrTooBig: return "NBD_REP_ERR_TOO_BIG";
                default: return $"option error 0x{reply:X8}";
            }
        }
    }
}
