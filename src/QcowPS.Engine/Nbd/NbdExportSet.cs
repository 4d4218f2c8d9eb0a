using System;
using System.Collections.Generic;
using System.IO;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Engine.Nbd
{
    /// <summary>Opens the images a server exports and names them, as Start-QcowNbdServer asks.</summary>
    public static class NbdExportSet
    {
        /// <summary>
        /// One export per image: with one image the default export "" (or exportName); with several,
        /// each named by its file name. A snapshot export is read-only. The images stay open (and
        /// locked the way QEMU locks them) until the exports are disposed.
        /// </summary>
        public static List<NbdExport> Open(IList<string> paths, ImageFormat format, string snapshot, bool readOnly, string exportName)
        {
            if (paths.Count == 0) throw new QcowException(QcowErrorKind.InvalidArgument, "No image to export");
            if (exportName != null && paths.Count > 1)
                throw new QcowException(QcowErrorKind.InvalidArgument, $"-ExportName names one export, but {paths.Count} images were given; their exports are named after their files");
            bool writable = !readOnly && snapshot == null;
            var exports = new List<NbdExport>();
            try
            {
                foreach (var path in paths)
                {
                    string name = paths.Count == 1 ? exportName ?? "" : System.IO.Path.GetFileName(path);
                    var disk = DiskImage.Open(path, new OpenOptions { Format = format, Writable = writable });
                    try
                    {
                        VirtualDisk served = disk;
                        if (snapshot != null)
                        {
                            if (!(disk is Qcow2Image q))
                                throw new QcowException(QcowErrorKind.InvalidArgument, path, $"'{path}' is a {disk.Format} image, which has no internal snapshots");
                            served = q.OpenSnapshot(snapshot);
                        }
                        exports.Add(new NbdExport(name, served, !writable, $"{System.IO.Path.GetFileName(path)}{(snapshot != null ? " snapshot " + snapshot : "")}", disk));
                    }
                    catch
                    {
                        disk.Dispose();
                        throw;
                    }
                }
                return exports;
            }
            catch
            {
                foreach (var e in exports) e.Dispose();
                throw;
            }
        }
    }
}
