using System;

namespace QcowPS.Engine
{
    /// <summary>What went wrong, in the terms a caller acts on; the module maps each to an ErrorCategory.</summary>
    public enum QcowErrorKind
    {
        /// <summary>The image contradicts the format specification (a hostile or damaged file).</summary>
        Corrupt,
        /// <summary>The image is valid but uses something this engine does not implement.</summary>
        Unsupported,
        /// <summary>A file the operation needs does not exist.</summary>
        NotFound,
        /// <summary>Another process holds the image (QEMU-compatible locks).</summary>
        InUse,
        /// <summary>A caller-supplied value is out of range or inconsistent.</summary>
        InvalidArgument,
        /// <summary>A write was attempted on an image opened read-only (or one marked corrupt).</summary>
        ReadOnly,
        /// <summary>A named or numbered internal snapshot does not exist.</summary>
        SnapshotNotFound,
        /// <summary>The host file system failed (full disk, I/O error).</summary>
        IoError,
        /// <summary>The operation was cancelled by the caller.</summary>
        Cancelled,
        /// <summary>The destination exists and replacing it was not allowed.</summary>
        AlreadyExists,
        /// <summary>The file is not an image of the format the operation needs (a text file, raw data, QED where qcow2 is needed).</summary>
        WrongFormat,
        /// <summary>A named persistent bitmap does not exist.</summary>
        BitmapNotFound,
        /// <summary>A persistent bitmap with that name exists already.</summary>
        BitmapExists,
        /// <summary>A persistent bitmap is marked in use (possibly stale) and cannot be read or changed.</summary>
        BitmapInUse,
    }

    /// <summary>The one exception type the engine throws for anything about images and their use.</summary>
    public class QcowException : Exception
    {
        public QcowErrorKind Kind { get; }

        /// <summary>The file the problem is in, when known.</summary>
        public string FilePath { get; internal set; }

        /// <summary>What was being done with FilePath (I/O errors: reading, writing, opening, creating).</summary>
        public QcowOperation Operation { get; internal set; }

        public QcowException(QcowErrorKind kind, string message, Exception inner = null)
            : base(message, inner)
        {
            Kind = kind;
        }

        public QcowException(QcowErrorKind kind, string filePath, string message, Exception inner = null)
            : base(message, inner)
        {
            Kind = kind;
            FilePath = filePath;
        }

        /// <summary>A stable identifier scripts can match: QcowPS.ImageCorrupt, QcowPS.UnsupportedFeature, ...</summary>
        public virtual string ErrorId
        {
            get
            {
                switch (Kind)
                {
                    case QcowErrorKind.Corrupt: return "QcowPS.ImageCorrupt";
                    case QcowErrorKind.Unsupported: return "QcowPS.UnsupportedFeature";
                    case QcowErrorKind.NotFound: return "QcowPS.FileNotFound";
                    case QcowErrorKind.InUse: return "QcowPS.ImageInUse";
                    case QcowErrorKind.InvalidArgument: return "QcowPS.InvalidArgument";
                    case QcowErrorKind.ReadOnly: return "QcowPS.ImageReadOnly";
                    case QcowErrorKind.SnapshotNotFound: return "QcowPS.SnapshotNotFound";
                    case QcowErrorKind.IoError: return "QcowPS.IOError";
                    case QcowErrorKind.Cancelled: return "QcowPS.Cancelled";
                    case QcowErrorKind.AlreadyExists: return "QcowPS.FileExists";
                    case QcowErrorKind.WrongFormat: return "QcowPS.WrongImageFormat";
                    case QcowErrorKind.BitmapNotFound: return "QcowPS.BitmapNotFound";
                    case QcowErrorKind.BitmapExists: return "QcowPS.BitmapExists";
                    case QcowErrorKind.BitmapInUse: return "QcowPS.BitmapInUse";
                    default: return "QcowPS.Error";
                }
            }
        }

        internal static QcowException Corrupt(string path, string message) =>
            new QcowException(QcowErrorKind.Corrupt, path, $"{message} in '{path}'");

        internal static QcowException Io(QcowOperation operation, string path, string message, Exception inner = null) =>
            new QcowException(QcowErrorKind.IoError, path, message, inner) { Operation = operation };

        internal static QcowException Unsupported(string path, string message) =>
            new QcowException(QcowErrorKind.Unsupported, path, $"{message} in '{path}'");
    }
}
