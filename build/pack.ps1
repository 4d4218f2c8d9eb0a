#Requires -Version 7.0
<#
.SYNOPSIS
    Builds QcowPS in Release and writes the module package <OutputPath>/QcowPS.<version>.nupkg.

.DESCRIPTION
    1. dotnet build QcowPS.sln -c Release (left out with -SkipBuild).
    2. Stages the module as users get it: QcowPS.psd1, QcowPS.format.ps1xml, bin/*.dll and en-US/ (the
       compiled help and about_QcowPS). Nothing of tests, sources, symbols or build tools.
    3. Publishes the staged folder with PSResourceGet (Publish-PSResource, which ships with PowerShell
       7.4 and later) to a repository that is the output folder, which writes the .nupkg there.
       PSResourceGet keeps its repository list in the user's profile: the temporary repository is
       registered in a child pwsh whose profile data folder (XDG_DATA_HOME) is a scratch folder, and is
       unregistered afterwards in any case, so the user's own repository list is never touched.

    Install from it the way users install modules:
        Register-PSResourceRepository -Name QcowPSLocal -Uri <OutputPath> -Trusted
        Install-PSResource -Name QcowPS -Repository QcowPSLocal

.PARAMETER OutputPath
    The folder to write the .nupkg into (created when missing).

.PARAMETER SkipBuild
    Package what is already built in Release.

.EXAMPLE
    dotnet pwsh -NoProfile -File build/pack.ps1 -OutputPath ./artifacts
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$OutputPath,
    [switch]$SkipBuild
)

Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'

$Repo = Split-Path -Parent $PSScriptRoot
$OutputPath = $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($OutputPath)
New-Item -ItemType Directory -Path $OutputPath -Force | Out-Null

if (-not $SkipBuild) {
    Write-Host '==> dotnet build QcowPS.sln -c Release'
    & dotnet build (Join-Path $Repo 'QcowPS.sln') -c Release -nologo -v quiet
    if ($LASTEXITCODE -ne 0) { throw "dotnet build failed (exit $LASTEXITCODE)" }
}

$manifest = Import-PowerShellDataFile -LiteralPath (Join-Path $Repo 'QcowPS.psd1')
$version = $manifest.ModuleVersion
$scratch = Join-Path ([IO.Path]::GetTempPath()) ('qcowps-pack-' + [Guid]::NewGuid().ToString('N').Substring(0, 8))
$stage = Join-Path $scratch 'QcowPS'
try {
    # The module as installed: manifest, format file, the assemblies the manifest loads, the help.
    New-Item -ItemType Directory -Path (Join-Path $stage 'bin'), (Join-Path $stage 'en-US') -Force | Out-Null
    Copy-Item -LiteralPath (Join-Path $Repo 'QcowPS.psd1'), (Join-Path $Repo 'QcowPS.format.ps1xml') -Destination $stage
    $dlls = @(Get-ChildItem -LiteralPath (Join-Path $Repo 'bin') -Filter *.dll)
    if (-not ($dlls.Name -contains 'QcowPS.dll')) { throw "bin/QcowPS.dll is missing: build in Release first (or leave out -SkipBuild)." }
    $dlls | Copy-Item -Destination (Join-Path $stage 'bin')
    Get-ChildItem -LiteralPath (Join-Path $Repo 'en-US') -File | Copy-Item -Destination (Join-Path $stage 'en-US')
    if (-not (Test-Path -LiteralPath (Join-Path $stage 'en-US/QcowPS.dll-Help.xml'))) { throw 'en-US/QcowPS.dll-Help.xml is missing: the build compiles it from docs/.' }

    # Publish in a child pwsh with its own profile data folder: the temporary repository never
    # reaches the user's PSResourceRepository.xml.
    $repository = 'QcowPSPack' + [Guid]::NewGuid().ToString('N').Substring(0, 8)
    $child = @"
`$ErrorActionPreference = 'Stop'
Import-Module Microsoft.PowerShell.PSResourceGet
Register-PSResourceRepository -Name '$repository' -Uri '$($OutputPath.Replace("'", "''"))' -Trusted
try {
    Publish-PSResource -Path '$($stage.Replace("'", "''"))' -Repository '$repository' -SkipDependenciesCheck
} finally {
    Unregister-PSResourceRepository -Name '$repository'
}
"@
    $dataHome = Join-Path $scratch 'data'
    New-Item -ItemType Directory -Path $dataHome -Force | Out-Null
    $saved = $env:XDG_DATA_HOME
    $env:XDG_DATA_HOME = $dataHome
    try {
        $pwsh = (Get-Process -Id $PID).Path
        $arguments = @(if ([IO.Path]::GetFileNameWithoutExtension($pwsh) -eq 'dotnet') { 'pwsh' })
        Push-Location -LiteralPath $Repo  # `dotnet pwsh` needs the repository's tool manifest
        try { & $pwsh @arguments -NoProfile -NonInteractive -Command $child } finally { Pop-Location }
        if ($LASTEXITCODE -ne 0) { throw "Publish-PSResource failed (exit $LASTEXITCODE)" }
    } finally {
        $env:XDG_DATA_HOME = $saved
    }
    $package = Join-Path $OutputPath "QcowPS.$version.nupkg"
    if (-not (Test-Path -LiteralPath $package)) { throw "Publish-PSResource did not write '$package'." }
    Write-Host "Wrote $package"
    Get-Item -LiteralPath $package
} finally {
    Remove-Item -LiteralPath $scratch -Recurse -Force -ErrorAction SilentlyContinue
}
