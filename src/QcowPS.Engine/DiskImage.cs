using System;
using System.Collections.Generic;
using System.IO;
using QcowPS.Engine.IO;
using QcowPS.Engine.Qcow2;
using QcowPS.Engine.Qed;
using QcowPS.Engine.Raw;

namespace QcowPS.Engine
{
    /// <summary>Opens images of any supported format, with their backing chains.</summary>
    public static class DiskImage
    {
        /// <summary>Which format a file's first bytes say it is: Qcow2, Qed, or Auto when neither.</summary>
        public static ImageFormat Probe(IHostFile file)
        {
            var magic = new byte[4];
            int n = file.ReadAt(0, magic, 0, 4);
            if (Qcow2Header.HasMagic(magic, n)) return ImageFormat.Qcow2;
            if (QedHeader.HasMagic(magic, n)) return ImageFormat.Qed;
            return ImageFormat.Auto;
        }

        public static ImageFormat Probe(string path)
        {
            using (var file = FileHostFile.Open(path, false, LockMode.None)) return Probe(file);
        }

        /// <summary>
        /// Opens one image that must be of the given format (Auto: qcow2 or QED by its magic), for the
        /// operations only that format has; anything else is a WrongFormat error naming what the file is.
        /// </summary>
        public static T OpenAs<T>(string path, OpenOptions options, string needed) where T : VirtualDisk
        {
            var disk = Open(path, options);
            if (disk is T wanted) return wanted;
            var format = disk.Format;
            disk.Dispose();
            throw new QcowException(QcowErrorKind.WrongFormat, System.IO.Path.GetFullPath(path), $"'{System.IO.Path.GetFullPath(path)}' is a {ImageFormats.QemuName(format)} image; this needs {needed}");
        }

        /// <summary>Opens an image and (unless told not to) its whole backing chain.</summary>
        public static VirtualDisk Open(string path, OpenOptions options = null)
        {
            options = options ?? new OpenOptions();
            // NBD URIs are told from paths here, the one place every image open passes through.
            if (Nbd.NbdUri.IsNbdUri(path)) return OpenNbd(path, options);
            if (options.Format == ImageFormat.Nbd)
                throw new QcowException(QcowErrorKind.InvalidArgument, path, $"'{path}' is not an NBD URI (nbd://host/export, nbd+unix:///export?socket=PATH), so it cannot be opened as Nbd");
            string full = System.IO.Path.GetFullPath(path);
            var seen = new List<string> { full };
            return OpenLayer(full, options, options.Format, seen, 0);
        }

        private static VirtualDisk OpenNbd(string uri, OpenOptions options)
        {
            if (options.Format != ImageFormat.Auto && options.Format != ImageFormat.Nbd && options.Format != ImageFormat.Raw)
                throw new QcowException(QcowErrorKind.WrongFormat, uri,
                    $"'{uri}' is an NBD export, read as the raw bytes the server serves; it cannot be opened as {ImageFormats.QemuName(options.Format)}");
            var nbd = options.Nbd ?? new Nbd.NbdClientOptions();
            if (options.AllBitmaps || options.Bitmaps.Count > 0)
            {
                // A copy: the caller's options may be reused for other URIs.
                nbd = new Nbd.NbdClientOptions
                {
                    Timeout = nbd.Timeout, Writable = nbd.Writable, MaxInFlight = nbd.MaxInFlight, TlsCertificates = nbd.TlsCertificates, Connections = nbd.Connections,
                    ExtraContexts = new List<string>(nbd.ExtraContexts),
                };
                foreach (var name in options.Bitmaps) nbd.ExtraContexts.Add(Nbd.NbdProtocol.ContextQemuDirtyBitmapPrefix + name);
                if (options.AllBitmaps) nbd.ExtraContexts.Add(Nbd.NbdProtocol.ContextQemuDirtyBitmapPrefix);
            }
            return Nbd.NbdDisk.Open(uri, options.Writable, nbd);
        }

        private static VirtualDisk OpenLayer(string path, OpenOptions options, ImageFormat format, List<string> chain, int depth)
        {
            IHostFile file = FileHostFile.Open(path, options.Writable, options.Lock);
            if (options.WrapHostFile != null) file = options.WrapHostFile(file);
            VirtualDisk disk;
            try
            {
                var probed = Probe(file);
                if (format == ImageFormat.Auto)
                {
                    if (probed == ImageFormat.Auto)
                    {
                        // A file the user names is read as raw when the caller says so (qemu-img does the same,
                        // and says so); a backing file named inside an image never is: that guess let a guest
                        // that wrote a qcow2 header into its raw disk read any file of the host (CVE-2008-2004).
                        if (depth == 0 && options.UnrecognisedAsRaw) probed = ImageFormat.Raw;
                        else if (depth == 0)
                            throw new QcowException(QcowErrorKind.WrongFormat, path,
                                $"'{path}' is not a qcow2 or QED image (no known magic); to {(options.Writable ? "write" : "read")} it as a raw image, say so with -Format Raw");
                        else
                            throw new QcowException(QcowErrorKind.WrongFormat, path,
                                $"Backing file '{path}' has no recorded format and is not a qcow2 or QED image; QcowPS never reads an unnamed backing file as raw (record the format with 'qemu-img rebase -F raw')");
                    }
                    format = probed;
                }
                if ((format == ImageFormat.Qcow2 || format == ImageFormat.Qed) && probed != format)
                    throw new QcowException(QcowErrorKind.WrongFormat, path,
                        $"'{path}' is not a {ImageFormats.QemuName(format)} image ({(probed == ImageFormat.Auto ? "it has no known magic" : $"it is a {ImageFormats.QemuName(probed)} image")})");
                switch (format)
                {
                    case ImageFormat.Qcow2: disk = Qcow2Image.Open(file, options); break;
                    case ImageFormat.Qed: disk = QedImage.Open(file, options); break;
                    default: disk = RawImage.Open(file); break;
                }
            }
            catch
            {
                file.Dispose();
                throw;
            }

            try
            {
                if (options.OpenBackingChain) OpenBacking(disk, options, chain, depth);
            }
            catch
            {
                disk.Dispose();
                throw;
            }
            return disk;
        }

        /// <summary>The backing file name and format an image records (null name when it has none).</summary>
        public static void GetBackingReference(VirtualDisk disk, out string name, out string format)
        {
            name = disk.RecordedBackingFile;
            format = disk.RecordedBackingFormat;
        }

        private static void OpenBacking(VirtualDisk disk, OpenOptions options, List<string> chain, int depth)
        {
            GetBackingReference(disk, out string name, out string formatName);
            if (name == null) return;
            string resolved = BackingResolver.ResolveRelative(disk.Path, name, "backing file");
            var format = BackingResolver.ParseFormatName(disk.Path, formatName);
            if (chain.Exists(p => string.Equals(p, resolved, StringComparison.Ordinal)))
            {
                chain.Add(resolved);
                throw new QcowException(QcowErrorKind.Corrupt, disk.Path,
                    $"Backing chain loop: {string.Join(" -> ", chain)}");
            }
            if (depth + 1 > options.MaxBackingDepth)
                throw new QcowException(QcowErrorKind.Unsupported, disk.Path,
                    $"The backing chain of '{chain[0]}' is deeper than {options.MaxBackingDepth} images");
            if (!File.Exists(resolved))
                throw new QcowException(QcowErrorKind.NotFound, disk.Path,
                    $"Backing file '{name}' of '{disk.Path}' does not exist (resolved to '{resolved}')");
            chain.Add(resolved);
            disk.Backing = OpenLayer(resolved, options.ForBacking(), format, chain, depth + 1);
        }

        /// <summary>The layer of a chain stored in this file (the top image or a backing file), or null.</summary>
        public static VirtualDisk LayerWithFile(VirtualDisk top, string path)
        {
            string full = System.IO.Path.GetFullPath(path);
            foreach (var layer in Layers(top))
                if (string.Equals(System.IO.Path.GetFullPath(layer.Path), full, StringComparison.Ordinal)) return layer;
            return null;
        }

        /// <summary>The layers of a chain, top first.</summary>
        public static IEnumerable<VirtualDisk> Layers(VirtualDisk top)
        {
            for (var d = top; d != null; d = d.Backing) yield return d;
        }
    }
}
