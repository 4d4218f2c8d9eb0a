using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using Markdig;
using Markdig.Extensions.Yaml;
using Markdig.Syntax;

namespace QcowPS.HelpBuilder
{
    /// <summary>
    /// Turns an about_*.md topic into the plain-text about_*.help.txt that Get-Help shows:
    /// "TOPIC" and the topic name, then each '## ' heading in capitals at the margin and its text
    /// indented by four spaces and wrapped at 80 columns; code blocks are indented by eight.
    /// </summary>
    internal static class AboutTopicWriter
    {
        private const int Width = 80;
        private const string Indent = "    ";

        public static string Convert(string path, List<string> errors)
        {
            string expected = Path.GetFileNameWithoutExtension(path);
            var sb = new StringBuilder();
            bool hasTitle = false, hasShortDescription = false;
            foreach (var block in Markdown.Parse(File.ReadAllText(path), MarkdownText.Pipeline))
            {
                switch (block)
                {
                    case YamlFrontMatterBlock _:
                    case HtmlBlock _:
                    case LinkReferenceDefinitionGroup _:
                        break;
                    case HeadingBlock heading when !hasTitle:
                        string title = MarkdownText.Inline(heading.Inline);
                        if (heading.Level != 1 || !string.Equals(title, expected, StringComparison.OrdinalIgnoreCase))
                            errors.Add($"{path}({heading.Line + 1}): the first heading must be '# {expected}'");
                        sb.Append("TOPIC\n").Append(Indent).Append(title).Append("\n\n");
                        hasTitle = true;
                        break;
                    case HeadingBlock heading:
                        string text = MarkdownText.Inline(heading.Inline);
                        hasShortDescription |= string.Equals(text, "SHORT DESCRIPTION", StringComparison.OrdinalIgnoreCase);
                        EndParagraph(sb);
                        sb.Append(heading.Level <= 2 ? text.ToUpperInvariant() : text).Append('\n');
                        break;
                    default:
                        if (!hasTitle) errors.Add($"{path}({block.Line + 1}): text before the '# {expected}' title");
                        WriteBlock(sb, block, Indent);
                        break;
                }
            }
            if (!hasTitle) errors.Add($"{path}: no '# {expected}' title");
            if (!hasShortDescription) errors.Add($"{path}: no '## SHORT DESCRIPTION' section");
            return sb.ToString().TrimEnd('\n') + "\n";
        }

        private static void WriteBlock(StringBuilder sb, Block block, string indent)
        {
            switch (block)
            {
                case ParagraphBlock paragraph:
                    Wrap(sb, MarkdownText.Inline(paragraph.Inline), indent, indent);
                    sb.Append('\n');
                    break;
                case CodeBlock code:
                    foreach (var line in MarkdownText.Code(code).Split('\n'))
                        sb.Append((indent + Indent + line).TrimEnd()).Append('\n');
                    sb.Append('\n');
                    break;
                case ListBlock list:
                    int number = int.TryParse(list.OrderedStart, out var start) ? start : 1;
                    foreach (var item in list.OfType<ListItemBlock>())
                    {
                        string bullet = list.IsOrdered ? (number++) + ". " : "- ";
                        string hanging = indent + new string(' ', bullet.Length);
                        bool first = true;
                        foreach (var child in item)
                        {
                            if (first && child is ParagraphBlock p)
                                Wrap(sb, MarkdownText.Inline(p.Inline), indent + bullet, hanging);
                            else
                                WriteBlock(sb, child, hanging);
                            first = false;
                        }
                    }
                    sb.Append('\n');
                    break;
                case QuoteBlock quote:
                    foreach (var child in quote) WriteBlock(sb, child, indent);
                    break;
                case ThematicBreakBlock _:
                    break;
            }
        }

        /// <summary>Word-wraps text at <see cref="Width"/>, keeping hard line breaks.</summary>
        private static void Wrap(StringBuilder sb, string text, string firstIndent, string indent)
        {
            string prefix = firstIndent;
            foreach (var hardLine in text.Split('\n'))
            {
                var line = new StringBuilder(prefix);
                bool empty = true;
                foreach (var word in hardLine.Split(' ').Where(w => w.Length > 0))
                {
                    if (!empty && line.Length + 1 + word.Length > Width)
                    {
                        sb.Append(line).Append('\n');
                        line.Clear().Append(indent);
                        empty = true;
                    }
                    if (!empty) line.Append(' ');
                    line.Append(word);
                    empty = false;
                }
                sb.Append(line.ToString().TrimEnd()).Append('\n');
                prefix = indent;
            }
        }

        /// <summary>Makes sure a heading is preceded by a blank line.</summary>
        private static void EndParagraph(StringBuilder sb)
        {
            if (sb.Length > 0 && !(sb.Length >= 2 && sb[sb.Length - 1] == '\n' && sb[sb.Length - 2] == '\n')) sb.Append('\n');
        }
    }
}
