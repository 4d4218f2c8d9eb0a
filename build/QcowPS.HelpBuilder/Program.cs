using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.RegularExpressions;

namespace QcowPS.HelpBuilder
{
    /// <summary>
    /// dotnet QcowPS.HelpBuilder.dll &lt;docsDir&gt; &lt;outDir&gt;
    /// Reads every Verb-Noun.md and about_*.md in docsDir (PlatyPS schema 2.0.0) and writes the MAML file
    /// named by their 'external help file' front matter plus one about_*.help.txt per topic into outDir.
    /// Writes nothing and exits 1 when any file breaks the schema; exits 2 on bad arguments.
    /// </summary>
    internal static class Program
    {
        private static readonly Regex CmdletFile = new Regex(@"^[A-Za-z]+-[A-Za-z0-9]+\.md$");

        private static int Main(string[] args)
        {
            if (args.Length != 2)
            {
                Console.Error.WriteLine("usage: dotnet QcowPS.HelpBuilder.dll <docsDir> <outDir>");
                return 2;
            }
            string docsDir = args[0], outDir = args[1];
            if (!Directory.Exists(docsDir))
            {
                Console.Error.WriteLine($"error: docs folder '{docsDir}' does not exist");
                return 2;
            }

            var files = Directory.GetFiles(docsDir, "*.md").OrderBy(f => f, StringComparer.Ordinal).ToList();
            var cmdletFiles = files.Where(f => CmdletFile.IsMatch(Path.GetFileName(f))).ToList();
            var aboutFiles = files.Where(f => Path.GetFileName(f).StartsWith("about_", StringComparison.OrdinalIgnoreCase)).ToList();

            var errors = new List<string>();
            if (cmdletFiles.Count == 0) errors.Add($"{docsDir}: no cmdlet help files (Verb-Noun.md)");

            var commands = cmdletFiles.Select(f => HelpMarkdownParser.Parse(f, errors)).ToList();
            var abouts = aboutFiles.ToDictionary(f => f, f => AboutTopicWriter.Convert(f, errors));

            var helpFileNames = commands
                .Select(c => c.FrontMatter != null && c.FrontMatter.TryGetValue("external help file", out var n) ? n : null)
                .Where(n => n != null).Distinct(StringComparer.OrdinalIgnoreCase).ToList();
            if (helpFileNames.Count > 1)
                errors.Add($"{docsDir}: the files name different 'external help file's ({string.Join(", ", helpFileNames)}); all cmdlets go into one MAML file");

            if (errors.Count > 0)
            {
                foreach (var error in errors) Console.Error.WriteLine("error: " + error);
                Console.Error.WriteLine($"Help not written: {errors.Count} problem(s) in {docsDir}.");
                return 1;
            }

            Directory.CreateDirectory(outDir);
            string mamlPath = Path.Combine(outDir, helpFileNames[0]);
            MamlWriter.Write(commands.OrderBy(c => c.Name, StringComparer.OrdinalIgnoreCase), mamlPath);
            Console.WriteLine($"Wrote {mamlPath} ({commands.Count} cmdlets)");
            foreach (var about in abouts)
            {
                string aboutPath = Path.Combine(outDir, Path.GetFileNameWithoutExtension(about.Key) + ".help.txt");
                File.WriteAllText(aboutPath, about.Value, new UTF8Encoding(false));
                Console.WriteLine($"Wrote {aboutPath}");
            }
            return 0;
        }
    }
}
