using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using Markdig;
using Markdig.Extensions.Yaml;
using Markdig.Syntax;

namespace QcowPS.HelpBuilder
{
    /// <summary>
    /// Reads one cmdlet markdown file written to PlatyPS schema 2.0.0 into a <see cref="CommandHelp"/>.
    /// Every problem found is added to the error list as "file(line): problem"; parsing goes on so that
    /// one run reports all of them.
    /// </summary>
    internal sealed class HelpMarkdownParser
    {
        private static readonly string[] Sections =
            { "SYNOPSIS", "SYNTAX", "DESCRIPTION", "EXAMPLES", "PARAMETERS", "INPUTS", "OUTPUTS", "NOTES", "RELATED LINKS" };

        private static readonly string[] ParameterKeys =
        {
            "Type", "Parameter Sets", "Aliases", "Accepted values", "Required", "Position", "Default value",
            "Accept pipeline input", "Accept wildcard characters",
        };

        // "-Name" in a syntax line: a dash that starts a word, after a space or "[".
        private static readonly Regex SyntaxParameter = new Regex(@"(?<=^|[\s\[])-(?<name>[A-Za-z_][A-Za-z0-9_]*)", RegexOptions.Multiline);

        private readonly string _path;
        private readonly List<string> _errors;
        private readonly Dictionary<string, (HeadingBlock Heading, List<Block> Body)> _sections =
            new Dictionary<string, (HeadingBlock, List<Block>)>(StringComparer.OrdinalIgnoreCase);

        private HelpMarkdownParser(string path, List<string> errors)
        {
            _path = path;
            _errors = errors;
        }

        public static CommandHelp Parse(string path, List<string> errors) =>
            new HelpMarkdownParser(path, errors).Parse(File.ReadAllText(path));

        private void Error(Block at, string problem) =>
            _errors.Add(at == null ? $"{_path}: {problem}" : $"{_path}({at.Line + 1}): {problem}");

        private CommandHelp Parse(string markdown)
        {
            var help = new CommandHelp { SourceFile = _path };
            HeadingBlock title = null;
            var current = new List<Block>();
            bool inSection = false;
            foreach (var block in Markdown.Parse(markdown, MarkdownText.Pipeline))
            {
                if (block is YamlFrontMatterBlock frontMatter)
                {
                    help.FrontMatter = KeyValues(frontMatter, null);
                }
                else if (block is HeadingBlock h1 && h1.Level == 1)
                {
                    if (title != null) Error(h1, "a second '# ' title; one file documents exactly one cmdlet");
                    title ??= h1;
                }
                else if (block is HeadingBlock h2 && h2.Level == 2)
                {
                    string name = MarkdownText.Inline(h2.Inline).ToUpperInvariant();
                    current = new List<Block>();
                    inSection = true;
                    if (!Sections.Contains(name))
                        Error(h2, $"unknown section '## {name}'; schema 2.0.0 has {string.Join(", ", Sections)}");
                    else if (_sections.ContainsKey(name))
                        Error(h2, $"section '## {name}' appears twice");
                    else
                        _sections.Add(name, (h2, current));
                }
                else if (block is HtmlBlock || block is LinkReferenceDefinitionGroup)
                {
                    // comments and link definitions are not help text
                }
                else if (!inSection)
                {
                    Error(block, "text before the first '## ' section");
                }
                else
                {
                    current.Add(block);
                }
            }

            string expectedName = Path.GetFileNameWithoutExtension(_path);
            help.Name = title == null ? expectedName : MarkdownText.Inline(title.Inline);
            if (title == null)
                Error(null, $"no '# {expectedName}' title");
            else if (!string.Equals(help.Name, expectedName, StringComparison.OrdinalIgnoreCase))
                Error(title, $"title '# {help.Name}' does not match the file name '{expectedName}.md'");
            if (!help.Name.Contains('-'))
            {
                Error(title, $"'{help.Name}' is not a Verb-Noun cmdlet name");
                help.Name = help.Name + "-";
            }

            CheckFrontMatter(help);
            help.Synopsis = RequiredText("SYNOPSIS");
            ParseSyntax(help);
            help.Description = RequiredText("DESCRIPTION");
            ParseExamples(help);
            ParseParameters(help);
            help.Inputs = TypeEntries("INPUTS");
            help.Outputs = TypeEntries("OUTPUTS");
            help.Notes = _sections.TryGetValue("NOTES", out var notes) ? MarkdownText.Paragraphs(notes.Body) : new List<string>();
            if (_sections.TryGetValue("RELATED LINKS", out var links)) help.Links = MarkdownText.Links(links.Body);
            CheckSyntaxAgainstParameters(help);
            return help;
        }

        private void CheckFrontMatter(CommandHelp help)
        {
            if (help.FrontMatter == null)
            {
                Error(null, "no YAML front matter ('---' block with 'external help file', 'Module Name', 'online version', 'schema: 2.0.0')");
                return;
            }
            if (!help.FrontMatter.TryGetValue("schema", out var schema) || schema != "2.0.0")
                Error(null, $"front matter must say 'schema: 2.0.0' (found '{schema}')");
            if (!help.FrontMatter.TryGetValue("external help file", out var file) || !file.EndsWith("-Help.xml", StringComparison.OrdinalIgnoreCase))
                Error(null, $"front matter 'external help file' must name the MAML file, e.g. 'QcowPS.dll-Help.xml' (found '{file}')");
        }

        private List<string> RequiredText(string section)
        {
            if (!_sections.TryGetValue(section, out var s))
            {
                Error(null, $"no '## {section}' section");
                return new List<string>();
            }
            var text = MarkdownText.Paragraphs(s.Body);
            if (MarkdownText.IsMissing(text)) Error(s.Heading, $"'## {section}' has no text (or only a {{{{ placeholder }}}})");
            return text;
        }

        /// <summary>Splits a section at its '### ' headings. Text before the first one is an error.</summary>
        private List<(HeadingBlock Heading, List<Block> Body)> Entries(string section, string expected)
        {
            var entries = new List<(HeadingBlock, List<Block>)>();
            if (!_sections.TryGetValue(section, out var s)) return entries;
            foreach (var block in s.Body)
            {
                if (block is HeadingBlock h && h.Level == 3)
                    entries.Add((h, new List<Block>()));
                else if (entries.Count > 0)
                    entries[entries.Count - 1].Item2.Add(block);
                else
                    Error(block, $"text in '## {section}' before the first '### {expected}'");
            }
            return entries;
        }

        private void ParseSyntax(CommandHelp help)
        {
            if (!_sections.TryGetValue("SYNTAX", out var s))
            {
                Error(null, "no '## SYNTAX' section");
                return;
            }
            HeadingBlock setHeading = null;
            foreach (var block in s.Body)
            {
                if (block is HeadingBlock h && h.Level == 3)
                {
                    setHeading = h;
                }
                else if (block is FencedCodeBlock code)
                {
                    string text = MarkdownText.Code(code);
                    var set = new SyntaxSet
                    {
                        // PlatyPS marks the default set as "### Name (Default)".
                        Name = setHeading == null ? "__AllParameterSets" : Regex.Replace(MarkdownText.Inline(setHeading.Inline), @"\s*\(Default\)$", ""),
                        Line = code.Line + 1,
                    };
                    if (!text.TrimStart().StartsWith(help.Name, StringComparison.OrdinalIgnoreCase))
                        Error(code, $"{Label(set)} does not start with '{help.Name}'");
                    foreach (Match m in SyntaxParameter.Matches(text))
                    {
                        string name = m.Groups["name"].Value;
                        if (!set.ParameterNames.Contains(name, StringComparer.OrdinalIgnoreCase)) set.ParameterNames.Add(name);
                    }
                    help.Syntax.Add(set);
                    setHeading = null;
                }
                else
                {
                    Error(block, "'## SYNTAX' holds only '### ParameterSetName' headings, each followed by a ``` block");
                }
            }
            if (help.Syntax.Count == 0) Error(s.Heading, "'## SYNTAX' has no ``` block");
        }

        private static string Label(SyntaxSet set) =>
            set.Name == "__AllParameterSets" ? "the SYNTAX block" : $"the SYNTAX block of set '{set.Name}'";

        private void ParseExamples(CommandHelp help)
        {
            if (!_sections.ContainsKey("EXAMPLES"))
            {
                Error(null, "no '## EXAMPLES' section");
                return;
            }
            foreach (var (heading, body) in Entries("EXAMPLES", "Example 1: title"))
            {
                var example = new ExampleHelp { Title = MarkdownText.Inline(heading.Inline) };
                var code = body.OfType<FencedCodeBlock>().Select(MarkdownText.Code).ToList();
                if (code.Count == 0 || MarkdownText.IsMissing(code))
                    Error(heading, $"example '{example.Title}' has no ```powershell code block");
                example.Code = string.Join("\n\n", code);
                example.Remarks = MarkdownText.Paragraphs(body.Where(b => !(b is FencedCodeBlock)));
                help.Examples.Add(example);
            }
            if (help.Examples.Count == 0) Error(_sections["EXAMPLES"].Heading, "'## EXAMPLES' has no '### Example 1: title' entry");
        }

        private void ParseParameters(CommandHelp help)
        {
            foreach (var (heading, body) in Entries("PARAMETERS", "-Name"))
            {
                string title = MarkdownText.Inline(heading.Inline);
                if (title == "CommonParameters") continue;
                if (!title.StartsWith("-") || title.Length == 1)
                {
                    Error(heading, $"parameter heading '### {title}' must be '### -Name' (or '### CommonParameters')");
                    continue;
                }
                var parameter = new ParameterHelp { Name = title.Substring(1), Line = heading.Line + 1 };
                if (help.Parameters.Any(p => string.Equals(p.Name, parameter.Name, StringComparison.OrdinalIgnoreCase)))
                    Error(heading, $"parameter -{parameter.Name} is documented twice");

                parameter.Description = MarkdownText.Paragraphs(body.TakeWhile(b => !MarkdownText.IsYaml(b)));
                if (MarkdownText.IsMissing(parameter.Description))
                    Error(heading, $"parameter -{parameter.Name} has no description");

                foreach (var block in body.SkipWhile(b => !MarkdownText.IsYaml(b)))
                {
                    if (MarkdownText.IsYaml(block))
                        parameter.Metadata.Add(Metadata(parameter.Name, (FencedCodeBlock)block));
                    else
                        Error(block, $"text after the ```yaml block of -{parameter.Name}; the description goes before it");
                }
                if (parameter.Metadata.Count == 0)
                    Error(heading, $"parameter -{parameter.Name} has no ```yaml block (Type, Parameter Sets, Aliases, Required, Position, ...)");
                help.Parameters.Add(parameter);
            }
        }

        private ParameterMetadata Metadata(string parameter, FencedCodeBlock yaml)
        {
            var values = KeyValues(yaml, $"the ```yaml block of -{parameter}");
            foreach (var key in values.Keys.Where(k => !ParameterKeys.Contains(k, StringComparer.OrdinalIgnoreCase)))
                Error(yaml, $"unknown key '{key}' in the ```yaml block of -{parameter}");

            string Get(string key) => values.TryGetValue(key, out var v) && v.Length > 0 ? v : null;
            string[] List(string key) =>
                (Get(key) ?? "").Split(',').Select(x => x.Trim()).Where(x => x.Length > 0 && x != "None").ToArray();

            var metadata = new ParameterMetadata
            {
                Type = Get("Type"),
                ParameterSets = List("Parameter Sets"),
                Aliases = List("Aliases"),
                AcceptedValues = List("Accepted values"),
                Required = string.Equals(Get("Required"), "true", StringComparison.OrdinalIgnoreCase),
                Position = Get("Position") ?? "named",
                DefaultValue = Get("Default value"),
                PipelineInput = Get("Accept pipeline input") ?? "False",
                Globbing = string.Equals(Get("Accept wildcard characters"), "true", StringComparison.OrdinalIgnoreCase),
            };
            if (metadata.Type == null) Error(yaml, $"the ```yaml block of -{parameter} has no 'Type:'");
            return metadata;
        }

        /// <summary>Simple "Key: value" lines (front matter, parameter metadata); keys are case-insensitive.</summary>
        private Dictionary<string, string> KeyValues(LeafBlock block, string what)
        {
            var result = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            foreach (var raw in MarkdownText.Code(block).Split('\n'))
            {
                string line = raw.Trim();
                if (line.Length == 0 || line == "---" || line.StartsWith("#")) continue;
                int colon = line.IndexOf(':');
                if (colon <= 0)
                {
                    if (what != null) Error(block, $"'{line}' in {what} is not 'Key: value'");
                    continue;
                }
                string value = line.Substring(colon + 1).Trim();
                if (value.Length >= 2 && (value[0] == '\'' || value[0] == '"') && value[value.Length - 1] == value[0])
                    value = value.Substring(1, value.Length - 2);
                result[line.Substring(0, colon).Trim()] = value;
            }
            return result;
        }

        private List<TypeHelp> TypeEntries(string section) =>
            Entries(section, "TypeName")
                .Select(e => new TypeHelp { TypeName = MarkdownText.Inline(e.Heading.Inline), Description = MarkdownText.Paragraphs(e.Body) })
                .ToList();

        /// <summary>Every parameter in SYNTAX needs a '### -Name' entry and every entry must be in some syntax set.</summary>
        private void CheckSyntaxAgainstParameters(CommandHelp help)
        {
            foreach (var set in help.Syntax)
            {
                foreach (var name in set.ParameterNames)
                {
                    if (!help.Parameters.Any(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase)))
                        _errors.Add($"{_path}({set.Line}): -{name} is in {Label(set)} but has no '### -{name}' entry under '## PARAMETERS'");
                }
            }
            foreach (var parameter in help.Parameters)
            {
                if (help.Syntax.Count > 0 && !help.Syntax.Any(s => s.ParameterNames.Contains(parameter.Name, StringComparer.OrdinalIgnoreCase)))
                    _errors.Add($"{_path}({parameter.Line}): -{parameter.Name} is documented but appears in no '## SYNTAX' block");
            }
        }
    }
}
