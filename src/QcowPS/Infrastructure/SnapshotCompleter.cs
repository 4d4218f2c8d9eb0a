using System;
using System.Collections;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Language;
using QcowPS.Engine;
using QcowPS.Engine.IO;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Infrastructure
{
    /// <summary>
    /// Completes snapshots of the image named on the same command line (-LiteralPath, -Path or by
    /// position). The image is opened read-only without QEMU's lock, so completing never disturbs a VM
    /// that holds it; an image that does not open offers nothing.
    /// </summary>
    public abstract class SnapshotCompleter : IArgumentCompleter
    {
        /// <summary>What this completer offers of each snapshot (its name, its ID).</summary>
        protected abstract string ValueOf(Qcow2Snapshot snapshot);

        protected abstract string TooltipOf(Qcow2Snapshot snapshot);

        public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
            CommandAst commandAst, IDictionary fakeBoundParameters)
        {
            string image = ImagePath(fakeBoundParameters);
            if (image == null) return Enumerable.Empty<CompletionResult>();
            string typed = (wordToComplete ?? "").Trim('\'', '"');
            var pattern = new WildcardPattern(WildcardPattern.Escape(typed) + "*", WildcardOptions.IgnoreCase);
            try
            {
                using (var disk = DiskImage.OpenAs<Qcow2Image>(image, new OpenOptions { OpenBackingChain = false, Lock = LockMode.None, RepairDirty = false }, "a qcow2 image"))
                    return disk.Snapshots.Where(s => pattern.IsMatch(ValueOf(s)))
                        .Select(s => new CompletionResult(Quote(ValueOf(s)), ValueOf(s), CompletionResultType.ParameterValue, TooltipOf(s)))
                        .ToList();
            }
            catch (Exception e) when (e is QcowException || e is System.IO.IOException || e is UnauthorizedAccessException)
            {
                return Enumerable.Empty<CompletionResult>();
            }
        }

        private static string ImagePath(IDictionary bound)
        {
            foreach (var key in new[] { "LiteralPath", "Path" })
            {
                if (bound == null || !bound.Contains(key)) continue;
                object value = bound[key];
                if (value is PSObject pso) value = pso.BaseObject;
                string path = value is IEnumerable list && !(value is string) ? list.Cast<object>().Select(o => o?.ToString()).FirstOrDefault() : value?.ToString();
                if (string.IsNullOrEmpty(path)) continue;
                return Resolve(path);
            }
            return null;
        }

        /// <summary>Relative to PowerShell's current location (not the process's), when the runspace tells it.</summary>
        private static string Resolve(string path)
        {
            try
            {
                var runspace = System.Management.Automation.Runspaces.Runspace.DefaultRunspace;
                if (runspace != null) return runspace.SessionStateProxy.Path.GetUnresolvedProviderPathFromPSPath(path);
            }
            catch (Exception e) when (e is PSInvalidOperationException || e is ItemNotFoundException || e is NotSupportedException || e is ProviderNotFoundException || e is DriveNotFoundException)
            {
            }
            return System.IO.Path.GetFullPath(path);
        }

        /// <summary>Bare when the parser reads it back as the same word; else single-quoted.</summary>
        private static string Quote(string value)
        {
            bool bare = value.Length > 0 && value[0] != '-' && value.All(c => char.IsLetterOrDigit(c) || c == '-' || c == '_' || c == '.');
            return bare ? value : "'" + value.Replace("'", "''") + "'";
        }
    }
}
