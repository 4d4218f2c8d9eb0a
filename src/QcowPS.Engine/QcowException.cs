using System;

namespace QcowPS.Engine
{
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
