using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Xml;
using System.Xml.Linq;

namespace QcowPS.HelpBuilder
{
    /// <summary>
    /// Writes commands as MAML, laid out the way PlatyPS's New-ExternalHelp lays it out
    /// (helpItems schema="maml", one command:command per cmdlet).
    /// </summary>
    internal static class MamlWriter
    {
        private static readonly XNamespace Msh = "http://msh";
        private static readonly XNamespace Maml = "http://schemas.microsoft.com/maml/2004/10";
        private static readonly XNamespace Command = "http://schemas.microsoft.com/maml/dev/command/2004/10";
        private static readonly XNamespace Dev = "http://schemas.microsoft.com/maml/dev/2004/10";
        private static readonly XNamespace MSHelp = "http://msdn.microsoft.com/mshelp";

        public static void Write(IEnumerable<CommandHelp> commands, string path)
        {
            var document = new XDocument(
                new XDeclaration("1.0", "utf-8", null),
                new XElement(Msh + "helpItems", new XAttribute("schema", "maml"), commands.Select(CommandElement)));
            var settings = new XmlWriterSettings
            {
                Encoding = new UTF8Encoding(false),
                Indent = true,
                IndentChars = "  ",
                NewLineChars = "\n",
                NamespaceHandling = NamespaceHandling.OmitDuplicates,
            };
            using (var writer = XmlWriter.Create(path, settings))
            {
                document.Save(writer);
            }
            File.AppendAllText(path, "\n");
        }

        private static XElement CommandElement(CommandHelp command)
        {
            var parameters = command.Parameters.ToDictionary(p => p.Name, StringComparer.OrdinalIgnoreCase);
            var links = command.Links.ToList();
            if (command.FrontMatter != null && command.FrontMatter.TryGetValue("online version", out var online)
                && MarkdownText.IsWebUri(online) && !links.Any(l => l.Uri == online))
            {
                links.Insert(0, new LinkHelp { Text = "Online Version:", Uri = online });
            }

            return new XElement(Command + "command",
                new XAttribute(XNamespace.Xmlns + "maml", Maml),
                new XAttribute(XNamespace.Xmlns + "command", Command),
                new XAttribute(XNamespace.Xmlns + "dev", Dev),
                new XAttribute(XNamespace.Xmlns + "MSHelp", MSHelp),
                new XElement(Command + "details",
                    new XElement(Command + "name", command.Name),
                    new XElement(Command + "verb", command.Verb),
                    new XElement(Command + "noun", command.Noun),
                    Description(command.Synopsis)),
                Description(command.Description),
                new XElement(Command + "syntax",
                    command.Syntax.Select(set => new XElement(Command + "syntaxItem",
                        new XElement(Maml + "name", command.Name),
                        set.ParameterNames.Where(parameters.ContainsKey)
                            .Select(name => ParameterElement(parameters[name], MetadataFor(parameters[name], set.Name), inSyntax: true))))),
                new XElement(Command + "parameters",
                    command.Parameters.Select(p => ParameterElement(p, p.Metadata.FirstOrDefault() ?? new ParameterMetadata(), inSyntax: false))),
                new XElement(Command + "inputTypes", command.Inputs.Select(t => TypeElement("inputType", t))),
                new XElement(Command + "returnValues", command.Outputs.Select(t => TypeElement("returnValue", t))),
                new XElement(Maml + "alertSet", new XElement(Maml + "alert", Paras(command.Notes))),
                new XElement(Command + "examples", command.Examples.Select(ExampleElement)),
                new XElement(Command + "relatedLinks", links.Select(RelatedLink)));
        }

        /// <summary>
        /// Get-Help -Online opens the first related link with a web address; only this module's own page
        /// (the "online version" front matter) may be that. Other web links keep their address in the
        /// text, so Get-Help shows it, but not as the link -Online would open (qemu-img's manual, say).
        /// </summary>
        private static XElement RelatedLink(LinkHelp link)
        {
            bool online = link.Text == "Online Version:";
            bool web = MarkdownText.IsWebUri(link.Uri);
            return new XElement(Maml + "navigationLink",
                new XElement(Maml + "linkText", web && !online ? $"{link.Text}: {link.Uri}" : link.Text),
                new XElement(Maml + "uri", web && online ? link.Uri : ""));
        }

        /// <summary>The yaml block that covers this set (or "(All)"), else the first one.</summary>
        private static ParameterMetadata MetadataFor(ParameterHelp parameter, string setName) =>
            parameter.Metadata.FirstOrDefault(m => m.AppliesTo(setName)) ?? parameter.Metadata.FirstOrDefault() ?? new ParameterMetadata();

        private static XElement ParameterElement(ParameterHelp parameter, ParameterMetadata m, bool inSyntax)
        {
            string type = m.IsSwitch ? "SwitchParameter" : m.Type ?? "";
            string defaultValue = m.IsSwitch && (m.DefaultValue == null || m.DefaultValue == "None") ? "False" : m.DefaultValue ?? "None";
            return new XElement(Command + "parameter",
                new XAttribute("required", Bool(m.Required)),
                new XAttribute("variableLength", "true"),
                new XAttribute("globbing", Bool(m.Globbing)),
                new XAttribute("pipelineInput", m.PipelineInput),
                new XAttribute("position", m.Position.ToLowerInvariant()),
                new XAttribute("aliases", m.Aliases.Length > 0 ? string.Join(", ", m.Aliases) : "none"),
                new XElement(Maml + "name", parameter.Name),
                Description(parameter.Description),
                inSyntax && m.AcceptedValues.Length > 0
                    ? new XElement(Command + "parameterValueGroup", m.AcceptedValues.Select(v =>
                        new XElement(Command + "parameterValue", new XAttribute("required", "false"), new XAttribute("variableLength", "false"), v)))
                    : null,
                // In syntax a switch shows no value placeholder, as in PlatyPS.
                inSyntax && m.IsSwitch
                    ? null
                    : new XElement(Command + "parameterValue",
                        new XAttribute("required", Bool(!m.IsSwitch)), new XAttribute("variableLength", "false"), type),
                new XElement(Dev + "type", new XElement(Maml + "name", type), new XElement(Maml + "uri")),
                new XElement(Dev + "defaultValue", defaultValue));
        }

        private static XElement TypeElement(string element, TypeHelp type) =>
            new XElement(Command + element,
                new XElement(Dev + "type", new XElement(Maml + "name", type.TypeName)),
                Description(type.Description));

        private static XElement ExampleElement(ExampleHelp example) =>
            new XElement(Command + "example",
                new XElement(Maml + "title", PadTitle(example.Title)),
                new XElement(Dev + "code", example.Code),
                new XElement(Dev + "remarks", Paras(example.Remarks)));

        private static XElement Description(List<string> paragraphs) => new XElement(Maml + "description", Paras(paragraphs));

        private static IEnumerable<XElement> Paras(List<string> paragraphs) =>
            paragraphs.Select(p => new XElement(Maml + "para", p));

        private static string Bool(bool value) => value ? "true" : "false";

        /// <summary>"Example 1: x" becomes "----- Example 1: x -----", about 64 wide, as PlatyPS pads it.</summary>
        private static string PadTitle(string title)
        {
            if (string.IsNullOrWhiteSpace(title) || title.Length >= 62) return title;
            string dashes = new string('-', (64 - title.Length - 2) / 2);
            return dashes + " " + title + " " + dashes;
        }
    }
}
