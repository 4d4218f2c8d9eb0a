using System;
using System.IO;

namespace QcowPS.Engine.IO
{
    /// <summary>
    /// The one rule for files QcowPS creates (images, conversions, -OutFile): an existing file is replaced
    /// only when the caller allows it; the new file is built under a hidden temporary name beside it and
    /// takes its name only when complete, so a failure (full disk, Ctrl+C) leaves nothing half-written.
    /// </summary>
    public static class NewFile
    {
        /// <summary>Throws unless a file can be created at path: AlreadyExists (without overwrite), a directory, a missing folder.</summary>
        public static void CheckCanCreate(string path, bool overwrite)
        {
            if (Directory.Exists(path))
                throw new QcowException(QcowErrorKind.InvalidArgument, path, $"'{path}' is a directory");
            if (!overwrite && File.Exists(path))
                throw new QcowException(QcowErrorKind.AlreadyExists, path, $"'{path}' already exists; use -Force to replace it");
            string folder = Path.GetDirectoryName(path);
            if (!string.IsNullOrEmpty(folder) && !Directory.Exists(folder))
                throw new QcowException(QcowErrorKind.NotFound, path, $"The folder of '{path}' does not exist") { Operation = QcowOperation.Create };
        }

        /// <summary>A hidden name beside path, where the new file is built before MoveIntoPlace gives it its name.</summary>
        public static string TemporaryPathFor(string path)
        {
            string folder = Path.GetDirectoryName(path);
            if (!string.IsNullOrEmpty(folder) && !Directory.Exists(folder))
                throw new QcowException(QcowErrorKind.NotFound, path, $"The folder of '{path}' does not exist") { Operation = QcowOperation.Create };
            return Path.Combine(folder ?? ".", "." + Path.GetFileName(path) + ".qcowps-" + Guid.NewGuid().ToString("N").Substring(0, 8));
        }

        /// <summary>Gives the finished temporary file its name (replacing what is there when overwrite).</summary>
        public static void MoveIntoPlace(string temp, string path, bool overwrite)
        {
            try
            {
                if (overwrite && File.Exists(path)) File.Delete(path);
                File.Move(temp, path);
            }
            catch (IOException e)
            {
                throw QcowException.Io(QcowOperation.Create, path, $"Cannot move the new file into place as '{path}': {e.Message}", e);
            }
        }

        /// <summary>Removes a temporary file after a failure; a file that cannot be removed is left (the failure matters more).</summary>
        public static void Discard(string temp)
        {
            try { File.Delete(temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
