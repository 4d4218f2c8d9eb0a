using QcowPS.Engine;

namespace QcowPS.Infrastructure
{
    /// <summary>A snapshot pattern that matches several snapshots where one is needed (Restore-QcowSnapshot, -Snapshot).</summary>
    internal sealed class AmbiguousSnapshotException : QcowException
    {
        public AmbiguousSnapshotException(string path, string message) : base(QcowErrorKind.InvalidArgument, path, message) { }

        public override string ErrorId => "QcowPS.AmbiguousSnapshot";
    }
}
