using System.Collections.Generic;

namespace QcowPS.HelpBuilder
{
    /// <summary>One cmdlet's help, as read from its PlatyPS markdown file.</summary>
    internal sealed class CommandHelp
    {
        public string Name;
        public string SourceFile;
        public Dictionary<string, string> FrontMatter;
        public List<string> Synopsis = new List<string>();
        public List<string> Description = new List<string>();
        public List<SyntaxSet> Syntax = new List<SyntaxSet>();
        public List<ParameterHelp> Parameters = new List<ParameterHelp>();
        public List<TypeHelp> Inputs = new List<TypeHelp>();
        public List<TypeHelp> Outputs = new List<TypeHelp>();
        public List<string> Notes = new List<string>();
        public List<ExampleHelp> Examples = new List<ExampleHelp>();
        public List<LinkHelp> Links = new List<LinkHelp>();

        public string Verb => Name.Split('-')[0];
        public string Noun => Name.Substring(Verb.Length + 1);
    }

    /// <summary>A parameter set from SYNTAX: its name and its parameters in the order written.</summary>
    internal sealed class SyntaxSet
    {
        public string Name;
        public int Line;
        public List<string> ParameterNames = new List<string>();
    }

    internal sealed class ParameterHelp
    {
        public string Name;
        public int Line;
        public List<string> Description = new List<string>();
        /// <summary>One entry per ```yaml block; more than one when a parameter differs between sets.</summary>
        public List<ParameterMetadata> Metadata = new List<ParameterMetadata>();
    }

    internal sealed class ParameterMetadata
    {
        public string Type;
        public string[] ParameterSets = new string[0];
        public string[] Aliases = new string[0];
        public string[] AcceptedValues = new string[0];
        public bool Required;
        public string Position = "named";
        public string DefaultValue;
        public string PipelineInput = "False";
        public bool Globbing;

        public bool IsSwitch =>
            Type == "SwitchParameter" || Type == "switch" || Type == "System.Management.Automation.SwitchParameter";

        public bool AppliesTo(string setName)
        {
            if (ParameterSets.Length == 0) return true;
            foreach (var set in ParameterSets)
            {
                if (set == "(All)" || string.Equals(set, setName, System.StringComparison.OrdinalIgnoreCase)) return true;
            }
            return false;
        }
    }

    internal sealed class TypeHelp
    {
        public string TypeName;
        public List<string> Description = new List<string>();
    }

    internal sealed class ExampleHelp
    {
        public string Title;
        public string Code;
        public List<string> Remarks = new List<string>();
    }

    internal sealed class LinkHelp
    {
        public string Text;
        public string Uri;
    }
}
