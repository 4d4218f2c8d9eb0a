using System;
using System.Linq;
using System.Management.Automation;

namespace QcowPS.Infrastructure
{
    /// <summary>
    /// Accepts only the listed numbers (-ClusterSize, -RefcountBits). Used instead of ValidateSet, whose
    /// completion offers the values sorted as text (1024 before 512); NumericChoiceCompleter offers them in order.
    /// </summary>
    [AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
    public sealed class ValidateNumericChoiceAttribute : ValidateArgumentsAttribute
    {
        private readonly long[] _allowed;

        public ValidateNumericChoiceAttribute(string parameter)
        {
            _allowed = parameter == "RefcountBits" ? NumericChoiceCompleter.RefcountBits : NumericChoiceCompleter.ClusterSizes;
        }

        protected override void Validate(object arguments, EngineIntrinsics engineIntrinsics)
        {
            object value = arguments is PSObject pso ? pso.BaseObject : arguments;
            long number;
            try { number = Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture); }
            catch (Exception e) when (e is FormatException || e is InvalidCastException || e is OverflowException)
            {
                throw new ValidationMetadataException($"'{value}' is not a number; give one of {string.Join(", ", _allowed)}.");
            }
            if (!_allowed.Contains(number))
                throw new ValidationMetadataException($"{number} is not allowed; give one of {string.Join(", ", _allowed)}.");
        }
    }
}
