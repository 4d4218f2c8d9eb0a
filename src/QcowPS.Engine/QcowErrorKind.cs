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
}
