using System.Collections;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Language;

namespace QcowPS.Infrastructure
{
    /// <summary>
    /// Offers the values of a numeric -ClusterSize or -RefcountBits in numeric order (completion of a
    /// ValidateSet sorts them as text: 1024 before 512).
    /// </summary>
    public sealed class NumericChoiceCompleter : IArgumentCompleter
    {
        internal static readonly long[] ClusterSizes = Enumerable.Range(9, 13).Select(bits => 1L << bits).ToArray();
        internal static readonly long[] RefcountBits = { 1, 2, 4, 8, 16, 32, 64 };

        public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
            CommandAst commandAst, IDictionary fakeBoundParameters)
        {
            var values = parameterName == "RefcountBits" ? RefcountBits : ClusterSizes;
            string typed = wordToComplete ?? "";
            return values.Select(v => v.ToString(System.Globalization.CultureInfo.InvariantCulture))
                .Where(v => v.StartsWith(typed, System.StringComparison.Ordinal))
                .Select(v => new CompletionResult(v, v, CompletionResultType.ParameterValue, v));
        }
    }
}
