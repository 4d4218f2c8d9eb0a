using System;
using System.Collections.Generic;

namespace QcowPS.Engine.Tests.Infrastructure
{
    /// <summary>An operation of a workload failed; the message names seed, step and replay command.</summary>
    public sealed class WorkloadFailedException : Exception
    {
        public WorkloadFailedException(string message, Exception inner) : base(message, inner) { }
    }
}
