using System.Runtime.CompilerServices;

namespace QcowPS.Engine
{
    /// <summary>How the JIT is asked to compile the engine's hot loops.</summary>
    internal static class JitOptions
    {
        /// <summary>MethodImplOptions.AggressiveOptimization (not in netstandard2.0's enum, honoured by .NET Core 3+):
        /// hot loops are compiled optimised at once instead of running tier-0 code for the first seconds.</summary>
        internal const MethodImplOptions AggressiveOptimization = (MethodImplOptions)512;
    }
}
