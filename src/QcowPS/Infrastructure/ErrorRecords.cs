using System;
using System.Management.Automation;
using QcowPS.Engine;

namespace QcowPS.Infrastructure
{
    /// <summary>Turns engine exceptions into ErrorRecords with stable ids and the matching category.</summary>
    internal static class ErrorRecords
    {
        public static ErrorCategory CategoryOf(QcowErrorKind kind)
        {
            switch (kind)
            {
                case QcowErrorKind.Corrupt: return ErrorCategory.InvalidData;
                case QcowErrorKind.Unsupported: return ErrorCategory.NotImplemented;
                case QcowErrorKind.NotFound: return ErrorCategory.ObjectNotFound;
                case QcowErrorKind.InUse: return ErrorCategory.ResourceBusy;
                case QcowErrorKind.InvalidArgument: return ErrorCategory.InvalidArgument;
                case QcowErrorKind.ReadOnly: return ErrorCategory.PermissionDenied;
                case QcowErrorKind.SnapshotNotFound: return ErrorCategory.ObjectNotFound;
                case QcowErrorKind.IoError: return ErrorCategory.WriteError;
                case QcowErrorKind.Cancelled: return ErrorCategory.OperationStopped;
                case QcowErrorKind.AlreadyExists: return ErrorCategory.ResourceExists;
                case QcowErrorKind.WrongFormat: return ErrorCategory.InvalidData;
                case QcowErrorKind.BitmapNotFound: return ErrorCategory.ObjectNotFound;
                case QcowErrorKind.BitmapExists: return ErrorCategory.ResourceExists;
                case QcowErrorKind.BitmapInUse: return ErrorCategory.InvalidOperation;
                default: return ErrorCategory.NotSpecified;
            }
        }

        /// <summary>
        /// The record of an engine error. Its target is the full path of the file the error is about (the
        /// destination of a conversion, a backing file), else the file the cmdlet was working on.
        /// </summary>
        public static ErrorRecord From(QcowException e, object target)
        {
            var category = CategoryOf(e.Kind);
            if (e.Kind == QcowErrorKind.IoError && (e.Operation == QcowOperation.Read || e.Operation == QcowOperation.Open))
                category = ErrorCategory.ReadError;
            return new ErrorRecord(e, e.ErrorId, category, e.FilePath ?? target);
        }

        public static ErrorRecord Make(string id, ErrorCategory category, object target, string message) =>
            new ErrorRecord(new InvalidOperationException(message), "QcowPS." + id, category, target);

        public static ErrorRecord Argument(string id, object target, string message) =>
            new ErrorRecord(new ArgumentException(message), "QcowPS." + id, ErrorCategory.InvalidArgument, target);
    }
}
