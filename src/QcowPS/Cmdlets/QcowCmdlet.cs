using System;
using System.Collections.Generic;
using System.IO;
using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.IO;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>
    /// Shared logic of every QcowPS cmdlet: resolving paths through the PowerShell provider (relative
    /// to $PWD, not the process's directory), and reporting engine errors as ErrorRecords.
    /// </summary>
    public abstract class QcowCmdlet : PSCmdlet
    {
        /// <summary>Resolves -Path (wildcards) or -LiteralPath to existing file-system paths; reports misses as non-terminating errors.</summary>
        protected List<string> ResolveExistingPaths(string[] paths, bool literal)
        {
            var result = new List<string>();
            if (paths == null) return result;
            foreach (var path in paths)
            {
                try
                {
                    if (IsNbdUri(path))
                    {
                        if (TryParseNbdUri(path)) result.Add(path);
                        continue;
                    }
                    if (literal)
                    {
                        string resolved = SessionState.Path.GetUnresolvedProviderPathFromPSPath(path, out ProviderInfo provider, out _);
                        if (!IsFileSystem(provider, path)) continue;
                        if (!File.Exists(resolved))
                        {
                            WriteError(NotFound(path, resolved));
                            continue;
                        }
                        result.Add(resolved);
                    }
                    else
                    {
                        // -Path on the command line is a wildcard, as with Get-Item ('vm[1].qcow2' matches vm1.qcow2).
                        // A path that arrived from the pipeline came from an object we (or Get-Item) emitted, which
                        // holds the file's real name: when a file of that name exists, it is that file.
                        if (!PathBoundOnCommandLine && WildcardPattern.ContainsWildcardCharacters(path))
                        {
                            string asWritten = SessionState.Path.GetUnresolvedProviderPathFromPSPath(path, out ProviderInfo literalProvider, out _);
                            if (literalProvider?.ImplementingType == typeof(Microsoft.PowerShell.Commands.FileSystemProvider) && File.Exists(asWritten))
                            {
                                result.Add(asWritten);
                                continue;
                            }
                        }
                        var resolved = SessionState.Path.GetResolvedProviderPathFromPSPath(path, out ProviderInfo provider);
                        if (!IsFileSystem(provider, path)) continue;
                        bool any = false;
                        foreach (var r in resolved)
                        {
                            if (Directory.Exists(r))
                            {
                                if (!WildcardPattern.ContainsWildcardCharacters(path))
                                    WriteError(ErrorRecords.Make("PathIsDirectory", ErrorCategory.InvalidArgument, path, $"'{r}' is a directory, not an image file."));
                                continue;
                            }
                            result.Add(r);
                            any = true;
                        }
                        if (!any && WildcardPattern.ContainsWildcardCharacters(path) && resolved.Count == 0)
                            WriteError(NotFound(path, SessionState.Path.GetUnresolvedProviderPathFromPSPath(path)));
                    }
                }
                catch (ItemNotFoundException e)
                {
                    WriteError(new ErrorRecord(e, "QcowPS.FileNotFound", ErrorCategory.ObjectNotFound, FullPathOrAsTyped(path)));
                }
                catch (System.Management.Automation.DriveNotFoundException e)
                {
                    WriteError(new ErrorRecord(e, "QcowPS.FileNotFound", ErrorCategory.ObjectNotFound, path));
                }
            }
            return result;
        }

        /// <summary>
        /// Whether an image argument is an NBD URI (nbd://, nbd+unix://, nbds://, nbds+unix://) rather than a
        /// path: such arguments skip the provider and go to the engine as they are, which connects to them.
        /// </summary>
        protected static bool IsNbdUri(string path) => Engine.Nbd.NbdUri.IsNbdUri(path);

        /// <summary>Checks an NBD URI's syntax up front, so a bad one is an error naming what is wrong before anything is opened.</summary>
        private bool TryParseNbdUri(string uri)
        {
            try
            {
                Engine.Nbd.NbdUri.Parse(uri);
                return true;
            }
            catch (QcowException e)
            {
                WriteError(new ErrorRecord(new ArgumentException(e.Message, e), "QcowPS.InvalidNbdUri", ErrorCategory.InvalidArgument, uri));
                return false;
            }
        }

        /// <summary>Resolves a path that need not exist yet (a file to create), relative to $PWD.</summary>
        protected string ResolveNewPath(string path)
        {
            if (IsNbdUri(path))
                ThrowTerminatingError(ErrorRecords.Argument("NbdUriNotAFile", path, $"'{path}' is an NBD export; this parameter names a new file, and an export is not created by QcowPS."));
            string resolved = SessionState.Path.GetUnresolvedProviderPathFromPSPath(path, out ProviderInfo provider, out _);
            if (provider == null || provider.ImplementingType != typeof(Microsoft.PowerShell.Commands.FileSystemProvider))
                ThrowTerminatingError(ErrorRecords.Argument("NotAFileSystemPath", path, $"'{path}' is not a file-system path."));
            return resolved;
        }

        private bool IsFileSystem(ProviderInfo provider, string path)
        {
            if (provider != null && provider.ImplementingType == typeof(Microsoft.PowerShell.Commands.FileSystemProvider)) return true;
            WriteError(ErrorRecords.Argument("NotAFileSystemPath", path, $"'{path}' is not a file-system path (provider {provider?.Name})."));
            return false;
        }

        /// <summary>Error targets are full paths (the file the error is about), whatever was typed.</summary>
        private string FullPathOrAsTyped(string path)
        {
            try { return SessionState.Path.GetUnresolvedProviderPathFromPSPath(path); }
            catch (Exception e) when (e is ItemNotFoundException || e is System.Management.Automation.DriveNotFoundException || e is ProviderNotFoundException || e is NotSupportedException) { return path; }
        }

        private static ErrorRecord NotFound(string path, string resolved) =>
            new ErrorRecord(new FileNotFoundException($"Cannot find image file '{resolved}' because it does not exist.", resolved),
                "QcowPS.FileNotFound", ErrorCategory.ObjectNotFound, resolved);

        /// <summary>True when -Path was typed on the command line (not bound from the pipeline); set in BeginProcessing.</summary>
        protected bool PathBoundOnCommandLine { get; private set; }

        protected override void BeginProcessing()
        {
            PathBoundOnCommandLine = MyInvocation.BoundParameters.ContainsKey("Path");
        }

        /// <summary>Runs one per-file action, turning engine errors into non-terminating errors for that file.</summary>
        protected void ForEachFile(IEnumerable<string> files, Action<string> action)
        {
            foreach (var file in files)
            {
                try
                {
                    action(file);
                }
                catch (QcowException e)
                {
                    WriteError(ErrorRecords.From(e, file));
                }
                catch (PipelineStoppedException)
                {
                    throw;
                }
                catch (IOException e)
                {
                    WriteError(new ErrorRecord(e, "QcowPS.IOError", ErrorCategory.ReadError, file));
                }
                catch (UnauthorizedAccessException e)
                {
                    WriteError(new ErrorRecord(e, "QcowPS.AccessDenied", ErrorCategory.PermissionDenied, file));
                }
            }
        }

        /// <summary>Read-only opens take QEMU's shared lock unless -ForceShare (qemu-img -U) says not to.</summary>
        protected virtual LockMode ReadLock => LockMode.Default;

        /// <summary>
        /// Read-only opens of files the user named: a file with no known magic reads as raw (as qemu-img
        /// does), and the output says Raw. Backing files never do (see DiskImage).
        /// </summary>
        protected OpenOptions ReadOptions(ImageFormat format) => new OpenOptions { Format = format, Writable = false, Lock = ReadLock, UnrecognisedAsRaw = true };

        /// <summary>Opens an image, saying with -Verbose what was opened as what, and which layers its chain has.</summary>
        protected VirtualDisk OpenImage(string path, OpenOptions options)
        {
            var disk = DiskImage.Open(path, options);
            WriteVerbose($"Opened '{disk.Path}' as {ImageFormats.QemuName(disk.Format)}{(options.Writable ? " for writing" : "")}" +
                (disk.Backing != null ? $", backed by {string.Join(" -> ", System.Linq.Enumerable.Select(System.Linq.Enumerable.Skip(DiskImage.Layers(disk), 1), l => $"'{l.Path}' ({ImageFormats.QemuName(l.Format)})"))}" : ""));
            return disk;
        }

        /// <summary>
        /// The snapshot a -Snapshot argument names (an ID, else SnapshotSelector's name rule), read-only;
        /// only qcow2 images have internal snapshots. Dispose the view before the image.
        /// </summary>
        protected VirtualDisk OpenSnapshotView(VirtualDisk disk, string snapshot)
        {
            if (!(disk is Engine.Qcow2.Qcow2Image image))
                throw new QcowException(QcowErrorKind.WrongFormat, disk.Path, $"'{disk.Path}' is a {ImageFormats.QemuName(disk.Format)} image, which has no internal snapshots");
            var selected = SnapshotSelector.ByIdOrName(image, snapshot);
            WriteVerbose($"Reading snapshot '{selected.Name}' (ID {selected.Id}) of '{image.Path}'");
            return image.OpenSnapshot(selected.Id);
        }

        /// <summary>Opens one image that must be qcow2 (snapshots, tables, writes), without its backing chain.</summary>
        protected Engine.Qcow2.Qcow2Image OpenQcow2(string path, bool writable = false, bool backingChain = false, bool allowCorrupt = false)
        {
            // Raw data, a text file or a QED image is the wrong kind of file: one error id for all of them.
            var options = new OpenOptions
            {
                Writable = writable, OpenBackingChain = backingChain,
                AllowCorrupt = allowCorrupt, RepairDirty = !allowCorrupt, Lock = writable ? LockMode.Default : ReadLock,
            };
            var image = DiskImage.OpenAs<Engine.Qcow2.Qcow2Image>(path, options, "a qcow2 image");
            WriteVerbose($"Opened '{image.Path}' as qcow2{(writable ? " for writing" : "")}");
            return image;
        }
    }

}
