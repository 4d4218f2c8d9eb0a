using System;
using System.IO;
using Xunit;

namespace QcowPS.Engine.Tests.Infrastructure
{
    /// <summary>
    /// The file-system tools used as oracles (mkntfs, ntfscp, ntfsinfo, ...). Like qemu-img: under CI
    /// (CI=true) a missing tool fails the test; elsewhere the test is skipped saying which tool is missing.
    /// They are looked for on PATH and in /usr/sbin and /sbin, where mkfs-style tools live.
    /// </summary>
    public static class GuestTools
    {
        public static void Require(params string[] tools)
        {
            Qemu.Require();
            foreach (var tool in tools)
            {
                if (Find(tool) != null) continue;
                if (Qemu.IsCI) Assert.Fail($"{tool} is not installed, and CI=true: install its package (.ci/run installs ntfs-3g)");
                Skip.If(true, $"{tool} is not installed; test skipped outside CI");
            }
        }

        /// <summary>Runs a tool; a nonzero exit fails with its output.</summary>
        public static string Run(string tool, params string[] args)
        {
            var (code, stdout, stderr) = TryRun(tool, args);
            if (code != 0) throw new InvalidOperationException($"{tool} {string.Join(" ", args)} failed ({code}): {stderr}{stdout}");
            return stdout;
        }

        public static (int exitCode, string stdout, string stderr) TryRun(string tool, params string[] args) =>
            Qemu.TryRun(Find(tool) ?? tool, args);

        private static string Find(string tool)
        {
            var dirs = (Environment.GetEnvironmentVariable("PATH") ?? "") + Path.PathSeparator + "/usr/sbin" + Path.PathSeparator + "/sbin";
            foreach (var dir in dirs.Split(Path.PathSeparator))
            {
                if (string.IsNullOrEmpty(dir)) continue;
                var candidate = Path.Combine(dir, tool);
                if (File.Exists(candidate)) return candidate;
            }
            return null;
        }
    }
}
