#Requires -Version 7.0
<#
    Shared helpers of the QcowPS Pester tests: importing the module under test, a temporary folder
    per test block, and thin wrappers over qemu-img / qemu-io, which make the reference images and
    give the reference answers (qemu-img info / map / convert).

    Import it from a test file with:  Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
#>

Set-StrictMode -Version 3.0

# --- The module under test ---------------------------------------------------------------------------

function Get-QcowPSModulePath {
    <# The manifest to test: $env:QCOWPS_MODULE_PATH when set, else the repository's QcowPS.psd1. #>
    [CmdletBinding()]
    [OutputType([string])]
    param()
    if ($env:QCOWPS_MODULE_PATH) {
        $path = $env:QCOWPS_MODULE_PATH
        # A folder holding the manifest is accepted too.
        if (Test-Path -LiteralPath $path -PathType Container) { $path = Join-Path $path 'QcowPS.psd1' }
    } else {
        $path = Join-Path $PSScriptRoot '../../QcowPS.psd1'
    }
    if (-not (Test-Path -LiteralPath $path -PathType Leaf)) {
        throw "QcowPS module manifest not found at '$path' (set QCOWPS_MODULE_PATH to the module's .psd1)."
    }
    return (Resolve-Path -LiteralPath $path).ProviderPath
}

function Import-QcowPSModule {
    <# Imports QcowPS globally (so test scripts see it) and returns the PSModuleInfo. #>
    [CmdletBinding()]
    param()
    $path = Get-QcowPSModulePath
    # The binary module cannot be unloaded from the process: import it once, from one place.
    $loaded = Get-Module -Name QcowPS
    if ($loaded -and $loaded.ModuleBase -ne (Split-Path -Parent $path)) {
        throw "QcowPS is already loaded from '$($loaded.ModuleBase)', not '$path'; run the tests in a new pwsh process."
    }
    if (-not $loaded) { Import-Module -Name $path -Global -ErrorAction Stop }
    return Get-Module -Name QcowPS
}

# --- qemu tools ----------------------------------------------------------------------------------------

function Get-QemuToolProblem {
    <# $null when qemu-img and qemu-io are on PATH, else the reason the image-based tests cannot run. #>
    [CmdletBinding()]
    [OutputType([string])]
    param()
    $missing = @('qemu-img', 'qemu-io') | Where-Object { -not (Get-Command -Name $_ -CommandType Application -ErrorAction Ignore) }
    if (-not $missing) { return $null }
    return "$($missing -join ' and ') not found on PATH; install qemu-utils (apt-get install qemu-utils) to run the image tests."
}

function Test-SkipWithoutQemu {
    <#
        True when the image tests are to be skipped: qemu is missing and this is not CI.
        On CI ($env:CI -eq 'true') a missing qemu never skips: Assert-QemuTools then fails the tests.
    #>
    [CmdletBinding()]
    [OutputType([bool])]
    param()
    $problem = Get-QemuToolProblem
    if (-not $problem) { return $false }
    if ($env:CI -eq 'true') { return $false }
    Write-Warning "Skipping the QcowPS image tests: $problem (on CI, with CI=true, this is a failure instead)."
    return $true
}

function Assert-QemuTools {
    <# Throws (failing the block) when qemu-img or qemu-io is missing. Call it from BeforeAll. #>
    [CmdletBinding()]
    param()
    $problem = Get-QemuToolProblem
    if ($problem) {
        $ci = if ($env:CI -eq 'true') { ' CI=true, so this fails instead of skipping.' } else { '' }
        throw "Cannot run the QcowPS image tests: $problem$ci"
    }
}

function Invoke-QemuTool {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)][string]$Tool,
        [Parameter(Mandatory)][string[]]$ArgumentList
    )
    $output = & $Tool @ArgumentList 2>&1
    $exit = $LASTEXITCODE
    $text = ($output | ForEach-Object { "$_" }) -join "`n"
    if ($exit -ne 0) {
        throw "$Tool $($ArgumentList -join ' ') failed (exit $exit): $text"
    }
    # qemu-io reports some failed commands on stdout with exit code 0.
    if ($Tool -eq 'qemu-io' -and $text -match '(?m)^(.* failed: .*|.*not found.*)$') {
        throw "$Tool $($ArgumentList -join ' ') failed: $($Matches[0])"
    }
    return $text
}

function Invoke-QemuImg {
    <#
        Runs qemu-img with the given arguments, one array: Invoke-QemuImg 'snapshot', '-c', 'before', $img.
        Throws with its output when it fails; returns stdout and stderr as text.
    #>
    [CmdletBinding()]
    param([Parameter(Mandatory, Position = 0)][string[]]$ArgumentList)
    Invoke-QemuTool -Tool 'qemu-img' -ArgumentList $ArgumentList
}

function Invoke-QemuIo {
    <#
        Runs qemu-io commands on one image, e.g.
        Invoke-QemuIo $img 'write -P 0xab 0 64k', 'write -z 1M 64k'
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory, Position = 0)][string]$Path,
        [Parameter(Mandatory, Position = 1)][string[]]$Command,
        [string]$Format = 'qcow2'
    )
    $arguments = @('-f', $Format)
    foreach ($c in $Command) { $arguments += @('-c', $c) }
    $arguments += $Path
    Invoke-QemuTool -Tool 'qemu-io' -ArgumentList $arguments | Out-Null
}

function New-QemuImage {
    <#
        Creates an image with qemu-img create and optionally writes to it with qemu-io; returns its full path.
        -Option takes qemu-img -o options: @{ compat = '0.10'; cluster_size = 4096 }.
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param(
        [Parameter(Mandatory, Position = 0)][string]$Path,
        [Parameter(Mandatory, Position = 1)][string]$Size,
        [string]$Format = 'qcow2',
        [System.Collections.IDictionary]$Option,
        [string]$BackingFile,
        [string]$BackingFormat,
        [string[]]$Write
    )
    $arguments = @('create', '-q', '-f', $Format)
    if ($Option -and $Option.Count) {
        $arguments += @('-o', (($Option.GetEnumerator() | ForEach-Object { "$($_.Key)=$($_.Value)" }) -join ','))
    }
    if ($BackingFile) { $arguments += @('-b', $BackingFile) }
    if ($BackingFormat) { $arguments += @('-F', $BackingFormat) }
    $arguments += @($Path, $Size)
    Invoke-QemuImg $arguments | Out-Null
    if ($Write) { Invoke-QemuIo -Path $Path -Command $Write -Format $Format }
    return $Path
}

function Get-QemuImageInfo {
    <# qemu-img info --output=json, parsed (an array of layers with -BackingChain). #>
    [CmdletBinding()]
    param([Parameter(Mandatory)][string]$Path, [switch]$BackingChain)
    $arguments = @('info', '--output=json')
    if ($BackingChain) { $arguments += '--backing-chain' }
    $arguments += $Path
    Invoke-QemuImg $arguments | ConvertFrom-Json
}

function Get-QemuMap {
    <# qemu-img map --output=json, parsed: start, length, depth, present, zero, data, offset. #>
    [CmdletBinding()]
    param([Parameter(Mandatory)][string]$Path)
    Invoke-QemuImg 'map', '--output=json', $Path | ConvertFrom-Json
}

function Export-QemuRaw {
    <# qemu-img convert -O raw (optionally of an internal snapshot); returns the raw file's path. #>
    [CmdletBinding()]
    [OutputType([string])]
    param(
        [Parameter(Mandatory)][string]$Path,
        [Parameter(Mandatory)][string]$Destination,
        [string]$SnapshotName
    )
    $arguments = @('convert', '-O', 'raw')
    if ($SnapshotName) { $arguments += @('-l', "snapshot.name=$SnapshotName") }
    $arguments += @($Path, $Destination)
    Invoke-QemuImg $arguments | Out-Null
    return $Destination
}

# --- Folders and bytes -------------------------------------------------------------------------------

function New-QcowTestFolder {
    <# A new empty folder under the system temp folder; remove it with Remove-QcowTestFolder. #>
    [CmdletBinding()]
    [OutputType([string])]
    param([string]$Prefix = 'qcowps-pester')
    $path = Join-Path ([IO.Path]::GetTempPath()) ("$Prefix-" + [Guid]::NewGuid().ToString('N').Substring(0, 12))
    (New-Item -ItemType Directory -Path $path -Force).FullName
}

function Remove-QcowTestFolder {
    [CmdletBinding()]
    param([string]$Path)
    if ($Path -and (Test-Path -LiteralPath $Path)) {
        Remove-Item -LiteralPath $Path -Recurse -Force -ErrorAction SilentlyContinue
    }
}

function Get-FileBytes {
    <# Bytes of a file, whole or a range (the reference side of data comparisons). #>
    [CmdletBinding()]
    [OutputType([byte[]])]
    param(
        [Parameter(Mandatory)][string]$Path,
        [long]$Offset = 0,
        [long]$Length = -1
    )
    $stream = [IO.File]::OpenRead($Path)
    try {
        if ($Length -lt 0) { $Length = $stream.Length - $Offset }
        $buffer = [byte[]]::new($Length)
        $stream.Position = $Offset
        $done = 0
        while ($done -lt $Length) {
            $n = $stream.Read($buffer, $done, $Length - $done)
            if ($n -le 0) { throw "'$Path' ends before offset $($Offset + $Length)" }
            $done += $n
        }
        return , $buffer
    } finally {
        $stream.Dispose()
    }
}

function Get-BytesHash {
    <# SHA-256 of a byte array as hex, so that big arrays compare quickly and fail readably. #>
    [CmdletBinding()]
    [OutputType([string])]
    param([Parameter(Mandatory)][AllowEmptyCollection()][byte[]]$Bytes)
    [Convert]::ToHexString([Security.Cryptography.SHA256]::HashData($Bytes))
}

function New-FilledBytes {
    <# A byte array of one repeated value (what qemu-io 'write -P value' writes). #>
    [CmdletBinding()]
    [OutputType([byte[]])]
    param([Parameter(Mandatory)][long]$Length, [byte]$Value = 0)
    $bytes = [byte[]]::new($Length)
    if ($Value) { [Array]::Fill($bytes, $Value) }
    return , $bytes
}

function Get-TextLineStats {
    <# Lines of formatted output: their count and the longest line's length. #>
    [CmdletBinding()]
    param([Parameter(Mandatory)][AllowEmptyString()][string]$Text)
    $lines = $Text -split '\r?\n'
    [pscustomobject]@{
        Lines     = $lines
        MaxLength = ($lines | ForEach-Object Length | Measure-Object -Maximum).Maximum
    }
}

Export-ModuleMember -Function @(
    'Get-QcowPSModulePath', 'Import-QcowPSModule',
    'Get-QemuToolProblem', 'Test-SkipWithoutQemu', 'Assert-QemuTools',
    'Invoke-QemuImg', 'Invoke-QemuIo', 'New-QemuImage', 'Get-QemuImageInfo', 'Get-QemuMap', 'Export-QemuRaw',
    'New-QcowTestFolder', 'Remove-QcowTestFolder',
    'Get-FileBytes', 'Get-BytesHash', 'New-FilledBytes', 'Get-TextLineStats'
)
