using System;
using System.Diagnostics;
using System.IO;
using System.Text;
using System.Text.Json;
using Xunit;

namespace QcowPS.Engine.Tests.Infrastructure
{
    /// <summary>
    /// Runs QEMU's tools, the oracle. Under CI (CI=true) a missing qemu-img fails the test; on a
    /// developer machine without qemu-utils the test is skipped with a message that says so.
    /// </summary>
    public static class Qemu
    {
        private static readonly Lazy<bool> s_available = new Lazy<bool>(() => Find("qemu-img") != null);

        public static bool IsCI => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

        /// <summary>Call first in every test that needs QEMU.</summary>
        public static void Require()
        {
            if (s_available.Value) return;
            if (IsCI) Assert.Fail("qemu-img is not installed, and CI=true: install qemu-utils (.ci/run does)");
            Skip.If(true, "qemu-img is not installed (apt-get install qemu-utils); interop test skipped outside CI");
        }

        private static string Find(string tool)
        {
            foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator))
            {
                if (string.IsNullOrEmpty(dir)) continue;
                var candidate = Path.Combine(dir, tool);
                if (File.Exists(candidate)) return candidate;
            }
            return null;
        }

        public static string Img(params string[] args) => Run("qemu-img", args);
        public static string Io(params string[] args) => Run("qemu-io", args);

        /// <summary>qemu-io with a list of -c commands on one image (format given explicitly).</summary>
        public static string IoCommands(string image, string format, params string[] commands)
        {
            var args = new System.Collections.Generic.List<string> { "-f", format };
            foreach (var c in commands) { args.Add("-c"); args.Add(c); }
            args.Add(image);
            return Run("qemu-io", args.ToArray());
        }

        /// <summary>qemu-img check --output=json: (corruptions, leaks, the whole report). Exit codes 0, 2 and 3 are results, not failures.</summary>
        public static (int corruptions, int leaks, JsonElement report) Check(string image, params string[] extra)
        {
            var args = new System.Collections.Generic.List<string> { "check", "--output=json" };
            args.AddRange(extra);
            args.Add(image);
            var (code, stdout, stderr) = TryRun("qemu-img", args.ToArray());
            if (code != 0 && code != 2 && code != 3)
                throw new InvalidOperationException($"qemu-img check {image} failed ({code}): {stderr}{stdout}");
            var json = JsonDocument.Parse(stdout).RootElement.Clone();
            int Get(string name) => json.TryGetProperty(name, out var v) ? v.GetInt32() : 0;
            return (Get("corruptions"), Get("leaks"), json);
        }

        /// <summary>Asserts qemu-img check finds neither corruptions nor leaks (and shows its messages when it does).</summary>
        public static void AssertClean(string image)
        {
            var (corruptions, leaks, report) = Check(image);
            if (corruptions != 0 || leaks != 0 || (report.TryGetProperty("check-errors", out var ce) && ce.GetInt32() != 0))
            {
                var (_, text, err) = TryRun("qemu-img", "check", image);
                Assert.Fail($"qemu-img check {image}: {corruptions} corruptions, {leaks} leaks\n{text}{err}");
            }
        }

        public static JsonElement Json(params string[] args) => JsonDocument.Parse(Img(args)).RootElement.Clone();

        public static (int exitCode, string stdout, string stderr) TryRun(string tool, params string[] args)
        {
            Require();
            var psi = new ProcessStartInfo(tool)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var a in args) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi);
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(300_000))
            {
                p.Kill(true);
                throw new TimeoutException($"{tool} {string.Join(" ", args)} did not finish in 5 minutes");
            }
            return (p.ExitCode, stdout.Result, stderr.Result);
        }

        public static string Run(string tool, params string[] args)
        {
            var (code, stdout, stderr) = TryRun(tool, args);
            if (code != 0)
                throw new InvalidOperationException($"{tool} {string.Join(" ", args)} failed ({code}): {stderr}{stdout}");
            // qemu-io reports failed commands on stdout with exit code 0
            if (tool == "qemu-io" && (stdout.Contains("failed:") || stdout.Contains("Pattern verification failed")))
                throw new InvalidOperationException($"qemu-io {string.Join(" ", args)}: {stdout}");
            return stdout;
        }
    }

}
