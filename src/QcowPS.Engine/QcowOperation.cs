namespace QcowPS.Engine
{
    /// <summary>What the engine was doing with a file when it failed: callers classify I/O errors by this, never by the wording.</summary>
    public enum QcowOperation
    {
        Unspecified,
        /// <summary>Opening an existing file (for reading or, with the image's lock, for writing).</summary>
        Open,
        Read,
        Write,
        /// <summary>Creating a new file, or moving it into place under its name.</summary>
        Create,
    }
}
