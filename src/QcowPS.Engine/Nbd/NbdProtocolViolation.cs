using System;

namespace QcowPS.Engine.Nbd
{
    /// <summary>
    /// A peer broke a mandatory rule of the protocol (bad magic, a request the spec says ends the
    /// session): the connection is dropped with this message, and the server goes on serving others.
    /// </summary>
    public sealed class NbdProtocolViolation : Exception
    {
        public NbdProtocolViolation(string message) : base(message) { }
    }
}
