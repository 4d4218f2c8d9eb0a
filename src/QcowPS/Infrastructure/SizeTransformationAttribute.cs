using System;
using System.Globalization;
using System.Management.Automation;
using System.Text.RegularExpressions;

namespace QcowPS.Infrastructure
{
    /// <summary>
    /// Lets size parameters take qemu-img style strings ('10G', '512K', '1T', '1.5M', '2MiB', '4KB'),
    /// all powers of 1024, besides numbers and PowerShell literals (10GB).
    /// </summary>
    [AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
    public sealed class SizeTransformationAttribute : ArgumentTransformationAttribute
    {
        private static readonly Regex SizePattern = new Regex(
            @"^\s*(?<n>\d+(\.\d+)?)\s*(?<u>[kmgtpe])?(i?b)?\s*$", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant);

        public override object Transform(EngineIntrinsics engineIntrinsics, object inputData)
        {
            if (inputData is PSObject pso) inputData = pso.BaseObject;
            if (inputData is string s) return Parse(s);
            return inputData;
        }

        public static long Parse(string text)
        {
            var m = SizePattern.Match(text ?? "");
            if (!m.Success)
                throw new ArgumentTransformationMetadataException(
                    $"'{text}' is not a size: use bytes (1048576), a PowerShell literal (1MB) or a qemu-img style size ('1M', '10G', '1T').");
            decimal n = decimal.Parse(m.Groups["n"].Value, CultureInfo.InvariantCulture);
            int shift = 0;
            if (m.Groups["u"].Success)
                shift = 10 * ("kmgtpe".IndexOf(char.ToLowerInvariant(m.Groups["u"].Value[0])) + 1);
            decimal bytes = n * (decimal)(1L << shift);
            if (bytes > long.MaxValue)
                throw new ArgumentTransformationMetadataException($"'{text}' is larger than the largest size ({long.MaxValue} bytes).");
            if (bytes != decimal.Truncate(bytes))
                throw new ArgumentTransformationMetadataException($"'{text}' is not a whole number of bytes.");
            return (long)bytes;
        }
    }
}
