using System;
using System.Collections.Generic;
using System.IO;
using System.Management.Automation;
using QcowPS.Engine;
using QcowPS.Engine.IO;
using QcowPS.Infrastructure;

namespace QcowPS.Cmdlets
{
    /// <summary>Base of the cmdlets that take existing images: -Path (wildcards) and -LiteralPath, by pipeline too.</summary>
    public abstract class ImageCmdlet : QcowCmdlet
    {
        protected const string PathSet = "Path";
        protected const string LiteralPathSet = "LiteralPath";

        [Parameter(Mandatory = true, Position = 0, ParameterSetName = PathSet, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        [SupportsWildcards]
        public string[] Path { get; set; }

        [Parameter(Mandatory = true, ParameterSetName = LiteralPathSet, ValueFromPipelineByPropertyName = true)]
        [Alias("PSPath", "LP", "FullName")]
        [ValidateNotNullOrEmpty]
        public string[] LiteralPath { get; set; }

        protected bool IsLiteral => ParameterSetName == LiteralPathSet || (Path == null && LiteralPath != null);

        protected List<string> ResolveInputPaths() => ResolveExistingPaths(IsLiteral ? LiteralPath : Path, IsLiteral);

        protected override void ProcessRecord() => ForEachFile(ResolveInputPaths(), ProcessImage);

        protected abstract void ProcessImage(string path);
    }
}
