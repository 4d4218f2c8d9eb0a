using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using System.Text.RegularExpressions;
using Markdig;
using Markdig.Extensions.Yaml;
using Markdig.Syntax;
using Markdig.Syntax.Inlines;

namespace QcowPS.HelpBuilder
{
    /// <summary>Turns Markdig blocks and inlines into the plain text that console help shows.</summary>
    internal static class MarkdownText
    {
        public static readonly MarkdownPipeline Pipeline = new MarkdownPipelineBuilder().UseYamlFrontMatter().Build();

        /// <summary>Plain text of inlines: `code` keeps its backticks (as PlatyPS does), emphasis marks are
        /// dropped, a link becomes its text (plus " (url)" when the url is an absolute web address).</summary>
        public static string Inline(ContainerInline container)
        {
            var sb = new StringBuilder();
            if (container != null)
            {
                foreach (var child in container) Append(sb, child);
            }
            return sb.ToString().Trim();
        }

        private static void Append(StringBuilder sb, Inline inline)
        {
            switch (inline)
            {
                case null:
                    return;
                case LiteralInline literal:
                    sb.Append(literal.Content.ToString());
                    return;
                case CodeInline code:
                    sb.Append('`').Append(code.Content).Append('`');
                    return;
                case LineBreakInline lineBreak:
                    sb.Append(lineBreak.IsHard ? "\n" : " ");
                    return;
                case AutolinkInline autolink:
                    sb.Append(autolink.Url);
                    return;
                case HtmlEntityInline entity:
                    sb.Append(entity.Transcoded.ToString());
                    return;
                case HtmlInline _:
                    return; // inline HTML (comments, tags) has no place in console help
                case LinkInline link:
                    var text = Inline(link);
                    if (!link.IsImage && IsWebUri(link.Url) && text != link.Url)
                        sb.Append(text).Append(" (").Append(link.Url).Append(')');
                    else
                        sb.Append(text.Length > 0 ? text : link.Url);
                    return;
                case ContainerInline container:
                    foreach (var child in container) Append(sb, child);
                    return;
            }
        }

        public static bool IsWebUri(string url) =>
            Uri.TryCreate(url, UriKind.Absolute, out var uri) && (uri.Scheme == "http" || uri.Scheme == "https");

        /// <summary>The text of a code block (or front matter), lines joined with \n.</summary>
        public static string Code(LeafBlock block)
        {
            var lines = block.Lines.Lines.Take(block.Lines.Count).Select(line => line.ToString());
            return string.Join("\n", lines).TrimEnd();
        }

        public static bool IsYaml(Block block) =>
            block is FencedCodeBlock code && string.Equals(code.Info, "yaml", StringComparison.OrdinalIgnoreCase);

        /// <summary>One string per paragraph: list items become "- item" / "1. item", code blocks
        /// are indented by four spaces, HTML blocks (comments) are dropped.</summary>
        public static List<string> Paragraphs(IEnumerable<Block> blocks)
        {
            var result = new List<string>();
            foreach (var block in blocks)
            {
                switch (block)
                {
                    case ParagraphBlock paragraph:
                        result.Add(Inline(paragraph.Inline));
                        break;
                    case HeadingBlock heading:
                        result.Add(Inline(heading.Inline));
                        break;
                    case ListBlock list:
                        int number = int.TryParse(list.OrderedStart, out var start) ? start : 1;
                        foreach (var item in list.OfType<ListItemBlock>())
                        {
                            string bullet = list.IsOrdered ? (number++) + ". " : "- ";
                            var inner = Paragraphs(item);
                            for (int i = 0; i < inner.Count; i++)
                                result.Add(IndentLines(inner[i], i == 0 ? bullet : new string(' ', bullet.Length), new string(' ', bullet.Length)));
                        }
                        break;
                    case QuoteBlock quote:
                        result.AddRange(Paragraphs(quote));
                        break;
                    case CodeBlock code when !(code is YamlFrontMatterBlock):
                        result.Add(IndentLines(Code(code), "    ", "    "));
                        break;
                }
            }
            return result;
        }

        private static string IndentLines(string text, string first, string rest)
        {
            var lines = text.Split('\n');
            return string.Join("\n", lines.Select((line, i) => (i == 0 ? first : rest) + line));
        }

        private static readonly Regex Placeholder = new Regex(@"^\{\{.*\}\}$", RegexOptions.Singleline);

        /// <summary>True when there is no real text: nothing, blanks, or PlatyPS's "{{ Fill in ... }}" placeholders.</summary>
        public static bool IsMissing(IEnumerable<string> paragraphs) =>
            paragraphs.All(p => string.IsNullOrWhiteSpace(p) || Placeholder.IsMatch(p.Trim()));

        /// <summary>Links of a RELATED LINKS section: every markdown link, in order.</summary>
        public static List<LinkHelp> Links(IEnumerable<Block> blocks)
        {
            var links = new List<LinkHelp>();
            foreach (var block in blocks)
            {
                if (block is LeafBlock leaf && leaf.Inline != null)
                {
                    foreach (var link in leaf.Inline.Descendants<LinkInline>().Where(l => !l.IsImage))
                        links.Add(new LinkHelp { Text = Inline(link), Uri = link.Url ?? "" });
                    foreach (var auto in leaf.Inline.Descendants<AutolinkInline>())
                        links.Add(new LinkHelp { Text = auto.Url, Uri = auto.Url });
                }
                else if (block is ContainerBlock container)
                {
                    links.AddRange(Links(container));
                }
            }
            return links;
        }
    }
}
