using System;

namespace QcowPS.Engine.Nbd
{
    /// <summary>How an NBD client operation failed, which picks the error id scripts match.</summary>
    public enum NbdFailure
    {
        /// <summary>The server answered a request with an NBD error (EIO, ENOSPC, EPERM, ...).</summary>
        ServerError,
        /// <summary>The server broke the protocol (wrong magic or cookie, a chunk outside the request, ...); the connection is dropped.</summary>
        ProtocolViolation,
        /// <summary>The server did not answer within the timeout; the connection is dropped.</summary>
        Timeout,
        /// <summary>The connection could not be made, or it closed part-way.</summary>
        ConnectionFailed,
        /// <summary>The server refused the negotiation (unknown export, TLS required, TLS refused, ...).</summary>
        Refused,
    }

    /// <summary>
    /// An NBD client failure: always names the server (the URI) and, for server errors, the NBD error by
    /// its errno name. The FilePath of the QcowException is the URI, so error records target it.
    /// </summary>
    public sealed class NbdException : QcowException
    {
        public NbdFailure Failure { get; }

        /// <summary>The NBD error code the server sent (0 when the failure is not a server error).</summary>
        public uint NbdError { get; }

        /// <summary>The errno name of NbdError ("EIO"), or null.</summary>
        public string NbdErrorName => NbdError == 0 ? null : NbdErrors.Name(NbdError);

        public NbdException(NbdFailure failure, string server, string message, uint nbdError = 0, Exception inner = null)
            : base(KindOf(failure, nbdError), server, message, inner)
        {
            Failure = failure;
            NbdError = nbdError;
        }

        public override string ErrorId
        {
            get
            {
                switch (Failure)
                {
                    case NbdFailure.ServerError: return "QcowPS.NbdServerError";
                    case NbdFailure.ProtocolViolation: return "QcowPS.NbdProtocolViolation";
                    case NbdFailure.Timeout: return "QcowPS.NbdTimeout";
                    case NbdFailure.Refused: return "QcowPS.NbdRefused";
                    default: return "QcowPS.NbdConnectionFailed";
                }
            }
        }

        /// <summary>A copy for another waiter of the same failed connection (each throw gets its own stack).</summary>
        internal NbdException Again() => new NbdException(Failure, FilePath, Message, NbdError, this);

        private static QcowErrorKind KindOf(NbdFailure failure, uint error)
        {
            switch (failure)
            {
                case NbdFailure.ProtocolViolation: return QcowErrorKind.Corrupt;
                case NbdFailure.Refused: return QcowErrorKind.NotFound;
                case NbdFailure.ServerError:
                    if (error == NbdProtocol.EPERM) return QcowErrorKind.ReadOnly;
                    if (error == NbdProtocol.EINVAL || error == NbdProtocol.EOVERFLOW) return QcowErrorKind.InvalidArgument;
                    if (error == NbdProtocol.ENOTSUP) return QcowErrorKind.Unsupported;
                    return QcowErrorKind.IoError;
                default: return QcowErrorKind.IoError;
            }
        }
    }
}
