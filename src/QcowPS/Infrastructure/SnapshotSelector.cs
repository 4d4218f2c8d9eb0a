using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.Qcow2;

namespace QcowPS.Infrastructure
{
    /// <summary>
    /// The one rule every snapshot cmdlet matches snapshots by. IDs compare exactly. A name that some
    /// snapshot has exactly is that snapshot (QEMU's names are case-sensitive: 'a' and 'A' can both
    /// exist); otherwise names match case-insensitively, with wildcards, as Get-Item matches file names.
    /// A name without wildcards that matches nothing is an error; a pattern that matches nothing is not.
    /// </summary>
    internal sealed class SnapshotSelector
    {
        private readonly string[] _names;
        private readonly string[] _ids;

        public SnapshotSelector(string[] names, string[] ids)
        {
            _names = names;
            _ids = ids;
        }

        public bool SelectsAll => _names == null && _ids == null;

        /// <summary>The snapshots selected, in the image's order; misses are reported to notFound.</summary>
        public List<Qcow2Snapshot> Select(Qcow2Image image, Action<QcowException> notFound)
        {
            var snapshots = image.Snapshots;
            var selected = new HashSet<Qcow2Snapshot>();
            if (_ids != null)
                foreach (var id in _ids)
                {
                    var hit = snapshots.Where(s => s.Id == id).ToList();
                    if (hit.Count == 0) notFound(NotFound(image.Path, $"ID '{id}'"));
                    selected.UnionWith(hit);
                }
            if (_names != null)
                foreach (var name in _names)
                {
                    var hit = Match(snapshots, name);
                    if (hit.Count == 0 && !WildcardPattern.ContainsWildcardCharacters(name)) notFound(NotFound(image.Path, $"name '{name}'"));
                    selected.UnionWith(hit);
                }
            return snapshots.Where(s => SelectsAll || selected.Contains(s)).ToList();
        }

        /// <summary>Exactly one snapshot: none is SnapshotNotFound, several is AmbiguousSnapshot (an error record id).</summary>
        public Qcow2Snapshot SelectOne(Qcow2Image image)
        {
            if (SelectsAll)
                throw new QcowException(QcowErrorKind.InvalidArgument, image.Path, "Give the snapshot with -Name or -Id (or pipe it from Get-QcowSnapshot)");
            QcowException missing = null;
            var found = Select(image, e => missing = missing ?? e);
            if (missing != null) throw missing;
            if (found.Count == 0)
                throw NotFound(image.Path, _ids != null ? $"ID '{string.Join("', '", _ids)}'" : $"a name like '{string.Join("', '", _names)}'");
            if (found.Count > 1)
                throw new AmbiguousSnapshotException(image.Path,
                    $"{found.Count} snapshots of '{image.Path}' match: {string.Join(", ", found.Select(s => $"'{s.Name}' (ID {s.Id})"))}; give one by its exact name or -Id");
            return found[0];
        }

        /// <summary>The one snapshot a -Snapshot argument names: an ID, else a name by the rule above.</summary>
        public static Qcow2Snapshot ByIdOrName(Qcow2Image image, string idOrName)
        {
            var byId = image.Snapshots.FirstOrDefault(s => s.Id == idOrName);
            return byId ?? new SnapshotSelector(new[] { idOrName }, null).SelectOne(image);
        }

        private static List<Qcow2Snapshot> Match(IReadOnlyList<Qcow2Snapshot> snapshots, string name)
        {
            var exact = snapshots.Where(s => s.Name == name).ToList();
            if (exact.Count > 0) return exact;
            var pattern = new WildcardPattern(name, WildcardOptions.IgnoreCase);
            return snapshots.Where(s => pattern.IsMatch(s.Name)).ToList();
        }

        private static QcowException NotFound(string path, string what) =>
            new QcowException(QcowErrorKind.SnapshotNotFound, path, $"No snapshot with {what} in '{path}'");
    }
}
