using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace QcowPS.Engine.Tests.Infrastructure
{
    /// <summary>An image QEMU made for a test: its path, format and the snapshots it holds.</summary>
    public sealed class TestImage
    {
        public string Path;
        public string Format = "qcow2";
        public string[] Snapshots = Array.Empty<string>();
    }
}
