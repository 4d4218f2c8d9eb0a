using System;

namespace QcowPS.Engine.Tests.Infrastructure
{
    /// <summary>
    /// Seeds for the random workloads: stable across processes (FNV-1a of the test's name, because
    /// string.GetHashCode is randomised per process on .NET), overridable for replay and long runs:
    /// QCOWPS_WORKLOAD_SEED picks the seed, QCOWPS_WORKLOAD_ROUNDS multiplies the operations.
    /// </summary>
    public static class WorkloadSeed
    {
        public const string SeedVariable = "QCOWPS_WORKLOAD_SEED";
        public const string RoundsVariable = "QCOWPS_WORKLOAD_ROUNDS";

        /// <summary>32-bit FNV-1a of the UTF-16 code units, folded to a non-negative int.</summary>
        public static int Stable(string name)
        {
            uint hash = 2166136261;
            foreach (char c in name)
            {
                hash ^= c;
                hash *= 16777619;
            }
            return (int)(hash & 0x7FFFFFFF);
        }

        /// <summary>The seed for a test: QCOWPS_WORKLOAD_SEED when set, else the stable hash of its name.</summary>
        public static int For(string name)
        {
            string fromEnvironment = Environment.GetEnvironmentVariable(SeedVariable);
            return string.IsNullOrEmpty(fromEnvironment) ? Stable(name) : int.Parse(fromEnvironment);
        }

        /// <summary>How many rounds (batches) a workload runs: QCOWPS_WORKLOAD_ROUNDS when set, else the default.</summary>
        public static int Rounds(int defaultRounds)
        {
            string fromEnvironment = Environment.GetEnvironmentVariable(RoundsVariable);
            return string.IsNullOrEmpty(fromEnvironment) ? defaultRounds : Math.Max(1, int.Parse(fromEnvironment));
        }

        /// <summary>The one command that replays a failing workload test with its seed.</summary>
        public static string ReplayCommand(string testName, int seed) =>
            $"{SeedVariable}={seed} dotnet test tests/QcowPS.Engine.Tests -c Release --filter \"FullyQualifiedName~{testName}\"";
    }
}
