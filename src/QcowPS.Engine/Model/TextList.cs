using System.Collections.Generic;

namespace QcowPS
{
    /// <summary>
    /// A list of strings that is a list in the pipeline (index it, count it, -contains) and readable text
    /// where it becomes one string: Export-Csv, string interpolation, Format-Table.
    /// </summary>
    public sealed class TextList : List<string>
    {
        public TextList() { }

        public TextList(IEnumerable<string> items) : base(items) { }

        public override string ToString() => string.Join("; ", this);
    }
}
