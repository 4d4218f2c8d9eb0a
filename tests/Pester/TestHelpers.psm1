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

function Assert-QemuToolsInIt {
    <#
        The body of each suite's "qemu-img and qemu-io are on PATH" test: skipped without qemu off CI,
        a failure with CI=true. Call it inside an It.
    #>
    [CmdletBinding()]
    param()
    $problem = Get-QemuToolProblem
    if ($problem -and $env:CI -ne 'true') {
        Set-ItResult -Skipped -Because $problem
        return
    }
    $problem | Should -BeNullOrEmpty -Because 'CI=true: the image tests must run, not skip'
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

function Invoke-CapturedProcess {
    <# Starts a process and waits for it, reading stdout and stderr both (neither can fill and block it): ExitCode, StdOut, StdErr. #>
    [CmdletBinding()]
    param([Parameter(Mandatory, Position = 0)][System.Diagnostics.ProcessStartInfo]$StartInfo)
    $StartInfo.RedirectStandardOutput = $true
    $StartInfo.RedirectStandardError = $true
    $StartInfo.UseShellExecute = $false
    $process = [System.Diagnostics.Process]::Start($StartInfo)
    try {
        $stderr = $process.StandardError.ReadToEndAsync()
        $stdout = $process.StandardOutput.ReadToEnd()
        $process.WaitForExit()
        [pscustomobject]@{ ExitCode = $process.ExitCode; StdOut = $stdout; StdErr = $stderr.GetAwaiter().GetResult() }
    } finally {
        $process.Dispose()
    }
}

function Get-QemuCheck {
    <#
        qemu-img check --output=json (with -Repair, check -r leaks / -r all), whatever its exit code:
        ExitCode (0 clean, 1 check error, 2 corruptions, 3 leaks), Result (the parsed JSON; qemu-img leaves
        out 'leaks', 'corruptions', '...-fixed' when they are 0; $null when qemu-img gave up, exit code 1 and
        no report) and Messages (the problem lines it prints).
        Leaks, Corruptions, LeaksFixed and CorruptionsFixed are given as numbers, 0 when absent.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory, Position = 0)][string]$Path,
        [ValidateSet('leaks', 'all')][string]$Repair
    )
    $start = [System.Diagnostics.ProcessStartInfo]::new('qemu-img')
    $arguments = @('check', '--output=json')
    if ($Repair) { $arguments += @('-r', $Repair) }
    foreach ($a in $arguments + $Path) { $start.ArgumentList.Add($a) }
    $run = Invoke-CapturedProcess $start
    $stdout = $run.StdOut; $errText = $run.StdErr; $exit = $run.ExitCode
    # Exit 1 without a report: qemu-img gave up, e.g. 'check -r leaks' on an image whose refcount structures
    # need rebuilding. That is an answer too (ExitCode 1, no Result); anything else is a failure of the tool.
    $gaveUp = $exit -eq 1 -and -not $stdout.Trim()
    if (-not $gaveUp -and ($exit -notin 0, 1, 2, 3 -or -not $stdout.Trim())) {
        throw "qemu-img $($arguments -join ' ') $Path failed (exit $exit): $errText $stdout"
    }
    $json = if ($gaveUp) { [pscustomobject]@{} } else { $stdout | ConvertFrom-Json }
    function Count($name) { if ($json.PSObject.Properties[$name]) { [long]$json.$name } else { 0 } }
    [pscustomobject]@{
        ExitCode          = $exit
        Result            = if ($gaveUp) { $null } else { $json }
        Corruptions       = Count 'corruptions'
        Leaks             = Count 'leaks'
        CheckErrors       = Count 'check-errors'
        CorruptionsFixed  = Count 'corruptions-fixed'
        LeaksFixed        = Count 'leaks-fixed'
        AllocatedClusters = Count 'allocated-clusters'
        TotalClusters     = Count 'total-clusters'
        FragmentedClusters = Count 'fragmented-clusters'
        CompressedClusters = Count 'compressed-clusters'
        ImageEndOffset    = Count 'image-end-offset'
        Messages          = @($errText -split '\r?\n' | Where-Object { $_.Trim() })
    }
}

function Get-QemuIoPatternMismatch {
    <#
        Reads ranges with qemu-io 'read -P pattern offset length' and returns what did not match: nothing when
        every range holds its pattern, else qemu-io's complaints. Use it as
            Get-QemuIoPatternMismatch $img '0x11 0 64k', '0 64k 64k' | Should -BeNullOrEmpty
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param(
        [Parameter(Mandatory, Position = 0)][string]$Path,
        [Parameter(Mandatory, Position = 1)][string[]]$Check,
        [string]$Format = 'qcow2'
    )
    $arguments = @('-f', $Format)
    foreach ($c in $Check) { $arguments += @('-c', "read -P $c") }
    $arguments += $Path
    $output = @(& qemu-io @arguments 2>&1 | ForEach-Object { "$_" })
    $exit = $LASTEXITCODE
    $problems = @($output | Where-Object { $_ -match 'fail|error|not found|invalid|cannot' })
    $reads = @($output | Where-Object { $_ -match '^read \d+/\d+ bytes at offset \d+' })
    if ($exit -ne 0) { $problems += "qemu-io exited $exit" }
    if ($reads.Count -ne $Check.Count) { $problems += "qemu-io completed $($reads.Count) of $($Check.Count) reads: $($output -join ' | ')" }
    if ($problems) { return ($problems -join "`n") }
}

function Start-QemuIoHolder {
    <#
        Starts qemu-io on an image, opened read-write as a running VM would hold it, and returns the process once
        QEMU's write lock on the image shows in /proc/locks. Stop it with Stop-QemuIoHolder.
    #>
    [CmdletBinding()]
    param([Parameter(Mandatory, Position = 0)][string]$Path, [string]$Format = 'qcow2')
    $start = [System.Diagnostics.ProcessStartInfo]::new('qemu-io')
    foreach ($a in '-f', $Format, $Path) { $start.ArgumentList.Add($a) }
    $start.RedirectStandardInput = $true
    $start.RedirectStandardOutput = $true
    $start.RedirectStandardError = $true
    $process = [System.Diagnostics.Process]::Start($start)
    # Wait until qemu-io's write lock (byte 101) shows in /proc/locks. Probing by opening the image
    # (qemu-img info) would take a lock itself and could make a qemu-io that opens later fail.
    $inode = (& stat -c '%i' $Path).Trim()
    $deadline = [DateTime]::UtcNow.AddSeconds(10)
    $held = $false
    while (-not $held -and -not $process.HasExited -and [DateTime]::UtcNow -lt $deadline) {
        Start-Sleep -Milliseconds 50
        $held = [bool](Get-Content /proc/locks | Where-Object {
            $f = -split $_
            $from = $f[-2] -as [long]; $to = $f[-1] -as [long]  # 'EOF' for a lock to the end of the file
            $_ -match 'OFDLCK' -and $_ -match ":$inode " -and $null -ne $from -and $from -le 101 -and ($f[-1] -eq 'EOF' -or $to -ge 101)
        })
    }
    if (-not $held) {
        Stop-QemuIoHolder $process
        throw "qemu-io did not take the lock of '$Path' within 10 seconds"
    }
    return $process
}

function Stop-QemuIoHolder {
    <# Ends a qemu-io started by Start-QemuIoHolder (it quits at the end of its input) and waits for it. #>
    [CmdletBinding()]
    param([Parameter(Position = 0)][System.Diagnostics.Process]$Process)
    if (-not $Process) { return }
    try {
        if (-not $Process.HasExited) {
            $Process.StandardInput.Close()
            if (-not $Process.WaitForExit(5000)) { $Process.Kill(); $Process.WaitForExit() }
        }
    } finally {
        $Process.Dispose()
    }
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

function New-RandomBytes {
    <# Bytes from a seeded generator: data that no pattern or zero check could mistake for something else. #>
    [CmdletBinding()]
    [OutputType([byte[]])]
    param([Parameter(Mandatory)][int]$Length, [int]$Seed = 1)
    $bytes = [byte[]]::new($Length)
    [System.Random]::new($Seed).NextBytes($bytes)
    return , $bytes
}

function Set-FileBigEndian {
    <#
        Overwrites an unsigned big-endian integer of 2, 4 or 8 bytes in a file (qcow2 metadata is big-endian):
        how the tests damage images on purpose. Offsets come from Get-QcowTable / Get-QcowInfo.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)][string]$Path,
        [Parameter(Mandatory)][long]$Offset,
        [Parameter(Mandatory)][UInt64]$Value,
        [ValidateSet(2, 4, 8)][int]$Size = 8
    )
    $bytes = [BitConverter]::GetBytes($Value)
    [Array]::Reverse($bytes)
    $stream = [IO.File]::Open($Path, [IO.FileMode]::Open, [IO.FileAccess]::ReadWrite, [IO.FileShare]::None)
    try {
        if ($Offset + $Size -gt $stream.Length) { throw "Offset $Offset is past the end of '$Path'" }
        $stream.Position = $Offset
        $stream.Write($bytes, 8 - $Size, $Size)
    } finally {
        $stream.Dispose()
    }
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

function Invoke-ChildPwsh {
    <#
        Runs a script in a new pwsh process (the one running the tests: `dotnet pwsh` from the repository's
        tool manifest, or pwsh itself) with the given environment variables, and returns its output lines.
        Throws with the output when it exits non-zero. For tests that need a session this one cannot give:
        a module path with nothing else on it, a scratch PSResourceGet configuration.
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param(
        [Parameter(Mandatory)][string]$Script,
        [hashtable]$Environment = @{}
    )
    $exe = (Get-Process -Id $PID).Path
    $start = [System.Diagnostics.ProcessStartInfo]::new($exe)
    if ([IO.Path]::GetFileNameWithoutExtension($exe) -eq 'dotnet') { $start.ArgumentList.Add('pwsh') }
    foreach ($a in '-NoProfile', '-NonInteractive', '-Command', $Script) { $start.ArgumentList.Add($a) }
    # `dotnet pwsh` finds the repository's tool manifest from here.
    $start.WorkingDirectory = (Resolve-Path (Join-Path $PSScriptRoot '../..')).ProviderPath
    foreach ($key in $Environment.Keys) { $start.Environment[$key] = [string]$Environment[$key] }
    $run = Invoke-CapturedProcess $start
    if ($run.ExitCode -ne 0) { throw "child pwsh exited $($run.ExitCode): $($run.StdOut) $($run.StdErr)" }
    return @($run.StdOut -split '\r?\n' | Where-Object { $_ -ne '' })
}

function Get-Hash([string]$Path) {
    # SHA-256 of a file, to compare images before and after.
    (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash
}

function Get-ErrorIds($Errors) {
    # The stable ids (QcowPS.Something) of ErrorRecords, without the ",Command" suffix.
    @($Errors | ForEach-Object { ($_.FullyQualifiedErrorId -split ',')[0] })
}

$script:NameCount = 0
function New-Name {
    <#
        A new, unused file name in a test folder: <Folder>/<Stem>-<n>.<Extension>, n counting up in this
        process, so that the tests of one block never trip over each other's files.
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param(
        [Parameter(Mandatory)][string]$Folder,
        [string]$Stem = 'disk',
        [string]$Extension = 'qcow2'
    )
    $script:NameCount++
    Join-Path $Folder "$Stem-$script:NameCount.$Extension"
}

# --- qcow2 metadata by its offsets (Get-QcowTable / Get-QcowCluster) ---------------------------------

function Get-RefcountEntry([string]$Path, [long]$HostOffset) {
    # The refcount block entry (16-bit by default) that counts the host cluster at $HostOffset.
    $entry = @(Get-QcowTable $Path RefcountBlock | Where-Object Target -eq $HostOffset)
    if ($entry.Count -ne 1) { throw "no single refcount entry for host offset $HostOffset in '$Path'" }
    return $entry[0]
}

function Get-L2EntryOf([string]$Path, [long]$VirtualOffset) {
    # The L2 table entry of the guest cluster at $VirtualOffset.
    $cluster = Get-QcowCluster $Path -Offset $VirtualOffset -Length 1
    $entry = @(Get-QcowTable $Path L2 -Index $cluster.L1Index | Where-Object Index -eq $cluster.L2Index)
    if ($entry.Count -ne 1) { throw "no L2 entry for guest offset $VirtualOffset in '$Path'" }
    return $entry[0]
}

# --- Snapshots, as QEMU sees them ----------------------------------------------------------------------

function Get-RawHash([string]$Path, [string]$SnapshotName) {
    # SHA-256 of the guest data (of a snapshot, with -SnapshotName) as qemu-img exports it to raw.
    $raw = Join-Path (Split-Path -Parent $Path) ('export-' + [Guid]::NewGuid().ToString('N') + '.raw')
    Export-QemuRaw -Path $Path -Destination $raw -SnapshotName $SnapshotName | Out-Null
    try { (Get-FileHash -LiteralPath $raw).Hash } finally { Remove-Item -LiteralPath $raw }
}

function Get-QemuSnapshotNames([string]$Path) {
    # The snapshot names qemu-img info lists, in its order; none is an empty array.
    $q = Get-QemuImageInfo $Path
    if ($q.PSObject.Properties.Name -contains 'snapshots') { @($q.snapshots.name) } else { @() }
}

# --- Images damaged on purpose (Test-QcowImage / Repair-QcowImage) ------------------------------------

function Get-BrokenImageCases {
    <# Images damaged on purpose: what qemu-img check must find, and what Test/Repair-QcowImage must agree with. #>
    @(
        @{ Name = 'a leaked cluster: the header''s refcount raised to 2'; Break = 'HeaderRefcount'; Kind = 'leak' }
        @{ Name = 'a leaked cluster: an L2 entry cleared'; Break = 'ClearL2'; Kind = 'leak' }
        @{ Name = 'a leaked cluster: the file grown by a cluster that is counted'; Break = 'TailLeak'; Kind = 'leak' }
        @{ Name = 'a refcount too low: a data cluster counted 0'; Break = 'DataRefcountZero'; Kind = 'corrupt' }
        @{ Name = 'a refcount too low: a cluster shared with a snapshot counted 1'; Break = 'SharedRefcountOne'; Kind = 'corrupt' }
        @{ Name = 'an L2 entry pointing at the L1 table'; Break = 'L2IntoL1'; Kind = 'corrupt' }
        @{ Name = 'an L2 entry pointing at the refcount block'; Break = 'L2IntoRefcountBlock'; Kind = 'corrupt' }
    )
}

function New-VictimImage([string]$Folder, [string]$Name, [switch]$Snapshot) {
    # Two data clusters (0 and 1 MiB); with -Snapshot, a snapshot and then a rewrite, so that
    # the cluster at 64 KiB is shared (refcount 2) and the one at 0 is not.
    $path = New-QemuImage -Path (Join-Path $Folder $Name) -Size 4M -Write 'write -P 0x11 0 128k', 'write -P 0x22 1M 64k'
    if ($Snapshot) {
        Invoke-QemuImg 'snapshot', '-c', 'before', $path | Out-Null
        Invoke-QemuIo $path 'write -P 0x33 0 64k'
    }
    return $path
}

function Invoke-Break([string]$Path, [string]$How) {
    # Damage an image (a Break of Get-BrokenImageCases) by patching bytes at offsets taken from Get-QcowTable / Get-QcowCluster.
    $info = Get-QcowInfo $Path
    switch ($How) {
        'HeaderRefcount' {
            Set-FileBigEndian -Path $Path -Offset (Get-RefcountEntry $Path 0).Offset -Value 2 -Size 2
        }
        'ClearL2' {
            Set-FileBigEndian -Path $Path -Offset (Get-L2EntryOf $Path 1MB).Offset -Value 0
        }
        'TailLeak' {
            $end = (Get-Item -LiteralPath $Path).Length
            $stream = [IO.File]::Open($Path, 'Open', 'ReadWrite')
            try { $stream.SetLength($end + $info.ClusterSize) } finally { $stream.Dispose() }
            Set-FileBigEndian -Path $Path -Offset (Get-RefcountEntry $Path $end).Offset -Value 1 -Size 2
        }
        'DataRefcountZero' {
            $hostOffset = (Get-QcowCluster $Path -Offset 0 -Length 1).HostOffset
            Set-FileBigEndian -Path $Path -Offset (Get-RefcountEntry $Path $hostOffset).Offset -Value 0 -Size 2
        }
        'SharedRefcountOne' {
            $cluster = Get-QcowCluster $Path -Offset 64KB -Length 1
            if ($cluster.Refcount -ne 2) { throw "the cluster at 64 KiB should be shared, its refcount is $($cluster.Refcount)" }
            Set-FileBigEndian -Path $Path -Offset (Get-RefcountEntry $Path $cluster.HostOffset).Offset -Value 1 -Size 2
        }
        'L2IntoL1' {
            Set-FileBigEndian -Path $Path -Offset (Get-L2EntryOf $Path 1MB).Offset -Value ([UInt64]$info.L1TableOffset -bor [UInt64]::Parse('9223372036854775808'))
        }
        'L2IntoRefcountBlock' {
            $block = (Get-QcowTable $Path RefcountTable -NonZero)[0].Target
            Set-FileBigEndian -Path $Path -Offset (Get-L2EntryOf $Path 1MB).Offset -Value ([UInt64]$block -bor [UInt64]::Parse('9223372036854775808'))
        }
        default { throw "unknown damage '$How'" }
    }
}

# --- Conversion: qemu-img compare and check as referees, a VM-like disk ---------------------------------

function Invoke-QemuCompare {
    <# qemu-img compare, whatever its exit code: ExitCode (0 identical, 1 different, 2 error) and Text. #>
    param(
        [Parameter(Mandatory)][string]$A,
        [Parameter(Mandatory)][string]$B,
        [string]$FormatA = 'qcow2',
        [string]$FormatB = 'qcow2',
        [switch]$Strict
    )
    $arguments = @('compare', '-f', $FormatA, '-F', $FormatB)
    if ($Strict) { $arguments += '-s' }
    $text = (& qemu-img @arguments $A $B 2>&1 | ForEach-Object { "$_" }) -join "`n"
    [pscustomobject]@{ ExitCode = $LASTEXITCODE; Text = $text }
}

function Assert-QemuIdentical {
    <# qemu-img compare says the two images hold the same guest data. #>
    param([string]$A, [string]$B, [string]$FormatA = 'qcow2', [string]$FormatB = 'qcow2')
    $c = Invoke-QemuCompare -A $A -B $B -FormatA $FormatA -FormatB $FormatB
    $c.ExitCode | Should -Be 0 -Because "qemu-img compare $A $B said: $($c.Text)"
}

function Assert-QemuClean {
    <# qemu-img check finds nothing wrong with a qcow2 image; returns its report. #>
    param([string]$Path)
    $check = Get-QemuCheck $Path
    $check.ExitCode | Should -Be 0 -Because "qemu-img check $Path said: $($check.Messages -join '; ')"
    $check.Corruptions | Should -Be 0
    $check.Leaks | Should -Be 0
    $check.CheckErrors | Should -Be 0
    return $check
}

function Get-AllocatedBytes([string]$Path) {
    # Bytes the host file system has allocated for the file (qemu-img info's 'actual-size').
    [long](Invoke-QemuImg 'info', '--output=json', '-f', 'raw', $Path | ConvertFrom-Json).'actual-size'
}

function Get-Leftovers([string]$Folder) {
    # Temporary files of unfinished conversions: '.name.qcowps-xxxxxxxx'.
    @(Get-ChildItem -LiteralPath $Folder -Force -File | Where-Object Name -like '.*.qcowps-*' | ForEach-Object Name)
}

function New-VmDiskRaw([string]$Path) {
    <#
        A 64 MiB raw disk laid out like a small VM: 1 MiB of random bytes at 0 (boot loader, keys:
        incompressible), 4 MiB of log text at 8 MiB (compressible), 4 KiB of random bytes in the last
        sector block, zeros everywhere else.
    #>
    $random = New-RandomBytes -Length 1MB -Seed 42
    $log = [Text.StringBuilder]::new()
    for ($i = 0; $log.Length -lt 4MB; $i++) {
        [void]$log.AppendLine("2026-11-26T10:$('{0:d2}' -f ($i % 60)):00Z web01 nginx[$($i % 977)]: GET /api/v1/items/$i 200 $($i * 37 % 5000)ms")
    }
    $text = [Text.Encoding]::ASCII.GetBytes($log.ToString())
    $file = [IO.File]::Create($Path)
    try {
        $file.SetLength(64MB)
        $file.Position = 0; $file.Write($random, 0, 1MB)
        $file.Position = 8MB; $file.Write($text, 0, 4MB)
        $file.Position = 64MB - 4KB; $file.Write($random, 12345, 4KB)
    } finally {
        $file.Dispose()
    }
    return $Path
}

# The data ranges of New-VmDiskRaw, [start, end), and how many clusters of a given size hold data.
$script:VmDataRanges = @(@(0, 1MB), @(8MB, 12MB), @((64MB - 4KB), 64MB))
function Get-VmDataClusters([long]$ClusterSize) {
    $n = 0
    foreach ($r in $script:VmDataRanges) { $n += [Math]::Ceiling($r[1] / $ClusterSize) - [Math]::Floor($r[0] / $ClusterSize) }
    return [long]$n
}

function Assert-ResultTotals {
    <# The clusters of a conversion result add up to the disk, and the timing is plausible. #>
    param($Result, [long]$ClusterSize, [TimeSpan]$Elapsed)
    $total = [Math]::Ceiling($Result.VirtualSize / $ClusterSize)
    ($Result.DataClusters + $Result.ZeroClusters + $Result.CompressedClusters) | Should -Be $total
    $Result.Duration | Should -BeOfType ([TimeSpan])
    $Result.Duration | Should -BeGreaterThan ([TimeSpan]::Zero)
    $Result.Duration | Should -BeLessOrEqual $Elapsed
    $Result.FileSize | Should -Be (Get-Item -LiteralPath $Result.Destination).Length
}

Export-ModuleMember -Function @(
    'Get-QcowPSModulePath', 'Import-QcowPSModule', 'Get-Hash', 'Get-ErrorIds',
    'Get-QemuToolProblem', 'Test-SkipWithoutQemu', 'Assert-QemuTools', 'Assert-QemuToolsInIt',
    'Invoke-QemuImg', 'Invoke-QemuIo', 'New-QemuImage', 'Get-QemuImageInfo', 'Get-QemuMap', 'Export-QemuRaw',
    'Get-QemuCheck', 'Get-QemuIoPatternMismatch', 'Start-QemuIoHolder', 'Stop-QemuIoHolder',
    'New-QcowTestFolder', 'Remove-QcowTestFolder',
    'Get-FileBytes', 'Get-BytesHash', 'New-FilledBytes', 'New-RandomBytes', 'Set-FileBigEndian', 'Get-TextLineStats',
    'Invoke-ChildPwsh', 'New-Name',
    'Get-RefcountEntry', 'Get-L2EntryOf', 'Get-RawHash', 'Get-QemuSnapshotNames',
    'Get-BrokenImageCases', 'New-VictimImage', 'Invoke-Break',
    'Invoke-QemuCompare', 'Assert-QemuIdentical', 'Assert-QemuClean', 'Get-AllocatedBytes', 'Get-Leftovers',
    'New-VmDiskRaw', 'Get-VmDataClusters', 'Assert-ResultTotals'
)
# --- Progress on a stepped clock ----------------------------------------------------------------------

function Invoke-QcowWithSteppedClock {
    <#
        Runs a script in its own runspace (progress shown) with the module's progress clock replaced by
        one that advances StepSeconds per reading, so the pacing of progress records is tested
        independently of how fast the machine is. Returns the progress records of ActivityId, the
        script's output, its errors, and how many times the clock was read (its virtual duration is
        Readings * StepSeconds). The real clock is put back afterwards, pass or fail.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)][string]$Script,
        [object[]]$ArgumentList = @(),
        [Parameter(Mandatory)][int]$ActivityId,
        [Parameter(Mandatory)][double]$StepSeconds
    )
    if (-not ('QcowPSTests.SteppedClock' -as [type])) {
        Add-Type -TypeDefinition @'
namespace QcowPSTests {
    public static class SteppedClock {
        private static long s_now;
        public static long Step;
        public static long Readings;
        public static void Reset(long step) { s_now = 0; Readings = 0; Step = step; }
        public static long Read() { System.Threading.Interlocked.Increment(ref Readings); return System.Threading.Interlocked.Add(ref s_now, Step); }
    }
}
'@
    }
    $module = Import-QcowPSModule
    $reporter = $module.ImplementingAssembly.GetType('QcowPS.Infrastructure.ProgressReporter', $true)
    $clock = $reporter.GetProperty('Clock', [Reflection.BindingFlags]'NonPublic,Static')
    $real = $clock.GetValue($null)
    [QcowPSTests.SteppedClock]::Reset([long]($StepSeconds * [Diagnostics.Stopwatch]::Frequency))
    $clock.SetValue($null, [Delegate]::CreateDelegate([Func[long]], [QcowPSTests.SteppedClock].GetMethod('Read')))
    $ps = [powershell]::Create()
    try {
        $modulePath = (Get-QcowPSModulePath).Replace("'", "''")
        [void]$ps.AddScript("Import-Module -Name '$modulePath'; `$ProgressPreference = 'Continue'; & { $Script } @args")
        foreach ($argument in $ArgumentList) { [void]$ps.AddArgument($argument) }
        $output = @($ps.Invoke())
        [pscustomobject]@{
            Records  = @($ps.Streams.Progress | Where-Object ActivityId -eq $ActivityId)
            Output   = $output
            Errors   = @($ps.Streams.Error)
            Readings = [QcowPSTests.SteppedClock]::Readings
        }
    } finally {
        $ps.Dispose()
        $clock.SetValue($null, $real)
    }
}

Export-ModuleMember -Function 'Invoke-QcowWithSteppedClock'

# ---- Persistent bitmaps (issue 12): QEMU's view through qemu-nbd -B + nbdinfo --map ----

function Get-QemuBitmapInfo {
    <# qemu-img info -U's bitmaps: objects with name, flags (array) and granularity; none when the image has none. #>
    [CmdletBinding()]
    param([Parameter(Mandatory, Position = 0)][string]$Path)
    $info = Invoke-QemuImg 'info', '-U', '--output=json', $Path | ConvertFrom-Json
    $data = $info.'format-specific'.data
    if ($data.PSObject.Properties['bitmaps']) { $data.bitmaps }
}

function Get-QemuBitmapMap {
    <#
        A bitmap's dirty map as QEMU exports it: qemu-nbd -r -B NAME started by nbdinfo on a Unix
        socket (stopped with it), nbdinfo --map=qemu:dirty-bitmap:NAME. Returns merged runs as
        "offset+length dirty|clean" strings, comparable with Get-QcowBitmap -Extent.
        Throws when nbdinfo or qemu-nbd is missing (so CI fails rather than skips).
    #>
    [CmdletBinding()]
    param([Parameter(Mandatory, Position = 0)][string]$Path, [Parameter(Mandatory, Position = 1)][string]$Name)
    foreach ($tool in '/usr/bin/nbdinfo', '/usr/bin/qemu-nbd') {
        if (-not (Test-Path -LiteralPath $tool)) { throw "$tool is missing: install libnbd-bin and qemu-utils" }
    }
    $json = Invoke-QemuTool -Tool '/usr/bin/nbdinfo' -ArgumentList @('--json', "--map=qemu:dirty-bitmap:$Name", '--',
        '[', '/usr/bin/qemu-nbd', '-r', '-f', 'qcow2', '-B', $Name, $Path, ']')
    ConvertTo-BitmapRunText (($json | ConvertFrom-Json) | ForEach-Object { [pscustomobject]@{ Offset = [long]$_.offset; Length = [long]$_.length; Dirty = ([int]$_.type -band 1) -eq 1 } })
}

function ConvertTo-BitmapRunText {
    <# Merges adjacent runs of the same kind and renders each as "offset+length dirty|clean". #>
    [CmdletBinding()]
    param([Parameter(Position = 0)][object[]]$Run)
    $merged = [System.Collections.Generic.List[object]]::new()
    foreach ($r in $Run) {
        if ($merged.Count -and $merged[-1].Dirty -eq $r.Dirty -and $merged[-1].Offset + $merged[-1].Length -eq $r.Offset) {
            $merged[-1].Length += $r.Length
        } else { $merged.Add([pscustomobject]@{ Offset = $r.Offset; Length = $r.Length; Dirty = $r.Dirty }) }
    }
    $merged | ForEach-Object { "$($_.Offset)+$($_.Length) $(if ($_.Dirty) { 'dirty' } else { 'clean' })" }
}

function New-BitmapTestImage {
    <#
        The image the bitmap-changing cmdlets' tests (Remove-, Clear-, Enable-, Disable-QcowBitmap) start
        from: a 2 MiB qcow2 in Folder with bitmap b0 (added by qemu-img) that recorded a 4 KiB write by
        qemu-io at 64 KiB; -Before then runs on its path (e.g. to disable b0). Returns the path.
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param(
        [Parameter(Mandatory, Position = 0)][string]$Folder,
        [Parameter(Mandatory, Position = 1)][string]$Name,
        [scriptblock]$Before
    )
    $img = New-QemuImage -Path (Join-Path $Folder $Name) -Size 2M
    Invoke-QemuImg 'bitmap', '--add', $img, 'b0' | Out-Null
    Invoke-QemuIo $img 'write -P 1 64k 4k'
    if ($Before) { & $Before $img }
    $img
}

Export-ModuleMember -Function 'Get-QemuBitmapInfo', 'Get-QemuBitmapMap', 'ConvertTo-BitmapRunText', 'New-BitmapTestImage'

# --- Guest tools: partitioning and file-system oracles (sgdisk, sfdisk, mke2fs, debugfs, mtools, ...) ---

function Get-GuestToolProblem {
    <# $null when every named tool is on PATH (or in /usr/sbin, /sbin), else what is missing and how to get it. #>
    [CmdletBinding()]
    [OutputType([string])]
    param([Parameter(Mandatory)][string[]]$Name)
    if ($env:PATH -notmatch '(^|:)/usr/sbin(:|$)') { $env:PATH = "${env:PATH}:/usr/sbin:/sbin" }
    $missing = @($Name | Where-Object { -not (Get-Command -Name $_ -CommandType Application -ErrorAction Ignore) })
    if (-not $missing) { return $null }
    return "$($missing -join ', ') not found on PATH; .ci/run installs them (gdisk fdisk parted e2fsprogs dosfstools mtools xfsprogs ntfs-3g)."
}

function Test-SkipWithoutGuestTools {
    <# True when the named tools are missing and this is not CI; with CI=true a missing tool never skips (Assert-GuestTools fails). #>
    [CmdletBinding()]
    [OutputType([bool])]
    param([Parameter(Mandatory)][string[]]$Name)
    $problem = Get-GuestToolProblem -Name $Name
    if (-not $problem -or $env:CI -eq 'true') { return $false }
    Write-Warning "Skipping the guest-disk tests: $problem (with CI=true this is a failure instead)."
    return $true
}

function Assert-GuestTools {
    <# Throws (failing the block) when a named tool is missing. Call it from BeforeAll. #>
    [CmdletBinding()]
    param([Parameter(Mandatory)][string[]]$Name)
    $problem = Get-GuestToolProblem -Name $Name
    if ($problem) { throw "Cannot run the guest-disk tests: $problem" }
}

function Assert-GuestToolsInIt {
    <# The body of each guest suite's prerequisite test: skipped when tools are missing off CI, a failure with CI=true. Call it inside an It. #>
    [CmdletBinding()]
    param([Parameter(Mandatory)][string[]]$Name)
    $problem = Get-GuestToolProblem -Name $Name
    if ($problem -and $env:CI -ne 'true') {
        Set-ItResult -Skipped -Because $problem
        return
    }
    $problem | Should -BeNullOrEmpty -Because 'CI=true: the guest tests must run, not skip'
}

function Invoke-GuestTool {
    <#
        Runs a partitioning or file-system tool; throws with its output when the exit code is not one of
        -SuccessCode (default 0). Returns stdout and stderr as text.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory, Position = 0)][string]$Tool,
        [Parameter(Position = 1)][string[]]$ArgumentList = @(),
        [int[]]$SuccessCode = @(0),
        [string]$InputText
    )
    $output = if ($PSBoundParameters.ContainsKey('InputText')) { $InputText | & $Tool @ArgumentList 2>&1 } else { & $Tool @ArgumentList 2>&1 }
    $exit = $LASTEXITCODE
    $text = ($output | ForEach-Object { "$_" }) -join "`n"
    if ($exit -notin $SuccessCode) { throw "$Tool $($ArgumentList -join ' ') failed (exit $exit): $text" }
    return $text
}

function Copy-FileRange {
    <#
        Copies Length bytes at Offset of a file into another file at DestinationOffset (a partition out of a
        raw disk, a file system into one). All-zero chunks are skipped, so a sparse target stays sparse:
        copy into a new or pre-zeroed file only.
    #>
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)][string]$Path,
        [Parameter(Mandatory)][string]$Destination,
        [long]$Offset = 0,
        [long]$Length = -1,
        [long]$DestinationOffset = 0
    )
    $source = [IO.File]::OpenRead($Path)
    $target = [IO.File]::Open($Destination, [IO.FileMode]::OpenOrCreate, [IO.FileAccess]::Write)
    try {
        if ($Length -lt 0) { $Length = $source.Length - $Offset }
        $source.Position = $Offset
        $target.Position = $DestinationOffset
        $buffer = [byte[]]::new(1MB)
        $zeros = [byte[]]::new(1MB)
        $left = $Length
        $end = $DestinationOffset + $Length
        while ($left -gt 0) {
            $n = $source.Read($buffer, 0, [Math]::Min($buffer.Length, $left))
            if ($n -le 0) { throw "'$Path' ends before offset $($Offset + $Length)" }
            if ($n -eq $buffer.Length -and [System.Linq.Enumerable]::SequenceEqual($buffer, $zeros)) {
                $target.Position += $n
            } else {
                $target.Write($buffer, 0, $n)
            }
            $left -= $n
        }
        if ($target.Length -lt $end) { $target.SetLength($end) }
    } finally {
        $source.Dispose()
        $target.Dispose()
    }
}

function Get-QemuDataBytes {
    <# Bytes of guest data an image stores (qemu-img map: data = true), the "allocated size" that sparsifying shrinks. #>
    [CmdletBinding()]
    [OutputType([long])]
    param([Parameter(Mandatory)][string]$Path)
    [long](Get-QemuMap -Path $Path | Where-Object data | Measure-Object -Property length -Sum).Sum
}

Export-ModuleMember -Function @(
    'Get-GuestToolProblem', 'Test-SkipWithoutGuestTools', 'Assert-GuestTools', 'Assert-GuestToolsInIt', 'Invoke-GuestTool', 'Copy-FileRange', 'Get-QemuDataBytes'
)

function Test-UnixSocketListening {
    <#
    True when a Unix socket at Socket is listening. The file appears at bind(), before listen(): a client
    connecting in between is refused, so /proc/net/unix must list it with __SO_ACCEPTCON (no probe
    connection, which a peer with a connection limit would count). Without /proc/net/unix, the file's
    existence is all there is to go by.
    #>
    param([Parameter(Mandatory)][string]$Socket)
    if (-not (Test-Path -LiteralPath $Socket)) { return $false }
    $table = try { [IO.File]::ReadAllLines('/proc/net/unix') } catch { return $true }
    foreach ($line in $table) {
        $fields = $line -split ' +' | Where-Object { $_ }
        if ($fields.Count -ge 8 -and $fields[7] -eq $Socket -and ([Convert]::ToInt32($fields[3], 16) -band 0x10000)) { return $true }
    }
    return $false
}

function Wait-UnixSocketListening {
    <# Waits (20 s at most) until Test-UnixSocketListening; throws with the server's error output if it exits first. #>
    param([Parameter(Mandatory)][string]$Socket, [Parameter(Mandatory)][Diagnostics.Process]$Process,
        [Parameter(Mandatory)][string]$Tool, [scriptblock]$StandardError)
    $deadline = [DateTime]::UtcNow.AddSeconds(20)
    while (-not (Test-UnixSocketListening -Socket $Socket)) {
        if ($Process.HasExited) { throw "$Tool exited: $(if ($StandardError) { & $StandardError })" }
        if ([DateTime]::UtcNow -gt $deadline) { throw "$Tool did not listen on $Socket within 20 s" }
        Start-Sleep -Milliseconds 20
    }
}

function Start-NbdPeer {
    <#
        Starts an NBD server (qemu-nbd or nbdkit) on a new Unix socket in $Folder: $SocketArgument names
        the socket option ('-k' for qemu-nbd, '-U' for nbdkit), $Arguments the rest. Returns the process
        and the nbd+unix URI (nbds+unix with -Tls). A missing tool throws (never skips); stop the server
        with Stop-NbdPeer in a finally or AfterAll.
    #>
    param([Parameter(Mandatory)][string]$Tool, [Parameter(Mandatory)][string]$Folder, [string[]]$Arguments,
        [Parameter(Mandatory)][string]$SocketArgument, [switch]$Tls, [string]$Query)
    $command = Get-Command $Tool -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
    if (-not $command) { throw "$Tool is not installed (apt-get install qemu-utils nbdkit; .ci/run does)" }
    $socket = Join-Path $Folder ("$Tool-" + [Guid]::NewGuid().ToString('N').Substring(0, 6) + '.sock')
    $info = [Diagnostics.ProcessStartInfo]::new($command.Source)
    $info.UseShellExecute = $false
    $info.RedirectStandardError = $true
    $info.RedirectStandardOutput = $true
    foreach ($a in @($SocketArgument, $socket) + $Arguments) { $info.ArgumentList.Add($a) }
    $process = [Diagnostics.Process]::Start($info)
    # Drained as they come, so a chatty server (nbdkit -v, a log filter to stderr) never blocks on a full pipe.
    $stderr = $process.StandardError.ReadToEndAsync()
    $null = $process.StandardOutput.ReadToEndAsync()
    try { Wait-UnixSocketListening -Socket $socket -Process $process -Tool $Tool -StandardError { $stderr.GetAwaiter().GetResult() } }
    catch { if (-not $process.HasExited) { $process.Kill() }; throw }
    $scheme = if ($Tls) { 'nbds+unix' } else { 'nbd+unix' }
    $extra = if ($Query) { "&$Query" } else { '' }
    [pscustomobject]@{ Process = $process; Socket = $socket; Uri = "${scheme}:///?socket=$socket$extra"; StandardError = $stderr }
}

function Stop-NbdPeer {
    <# Stops a server Start-NbdPeer started (nothing when it has exited already or was never started). #>
    param($Peer)
    if ($Peer -and -not $Peer.Process.HasExited) { $Peer.Process.Kill(); $null = $Peer.Process.WaitForExit(10000) }
}

Export-ModuleMember -Function 'Start-NbdPeer', 'Stop-NbdPeer', 'Test-UnixSocketListening', 'Wait-UnixSocketListening'

function New-NbdTestCertificates {
    <#
        X.509 material made with openssl in $Folder, in QEMU's tls-creds-x509 layout: Server (ca-cert.pem,
        server-cert.pem, server-key.pem, for localhost), Client (ca-cert.pem of the same CA, for a client)
        and WrongCa (a ca-cert.pem of another CA). Returns the three folders. openssl missing throws.
    #>
    param([Parameter(Mandatory)][string]$Folder)
    if (-not (Get-Command openssl -CommandType Application -ErrorAction Ignore)) { throw 'openssl is missing (apt-get install openssl)' }
    $names = 'server', 'client', 'wrong-ca', 'keys'
    foreach ($n in $names) { New-Item -ItemType Directory -Path (Join-Path $Folder $n) -Force | Out-Null }
    $keys = Join-Path $Folder 'keys'
    function Run { $out = & openssl @args 2>&1; if ($LASTEXITCODE) { throw "openssl $($args -join ' ') failed: $out" } }
    foreach ($ca in @(@{ Name = 'good'; Dir = Join-Path $Folder 'client' }, @{ Name = 'wrong'; Dir = Join-Path $Folder 'wrong-ca' })) {
        Run req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=QcowPS $($ca.Name) CA" `
            -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' `
            -keyout (Join-Path $keys "$($ca.Name)-key.pem") -out (Join-Path $ca.Dir 'ca-cert.pem')
    }
    $server = Join-Path $Folder 'server'
    Copy-Item (Join-Path $Folder 'client/ca-cert.pem') (Join-Path $server 'ca-cert.pem')
    $ext = Join-Path $keys 'server.ext'
    Set-Content -LiteralPath $ext -Value "subjectAltName=DNS:localhost,IP:127.0.0.1`nextendedKeyUsage=serverAuth"
    Run req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj '/CN=localhost' `
        -keyout (Join-Path $server 'server-key.pem') -out (Join-Path $keys 'server.csr')
    Run x509 -req -in (Join-Path $keys 'server.csr') -CA (Join-Path $server 'ca-cert.pem') -CAkey (Join-Path $keys 'good-key.pem') `
        -CAcreateserial -days 2 -extfile $ext -out (Join-Path $server 'server-cert.pem')
    [pscustomobject]@{ Server = $server; Client = Join-Path $Folder 'client'; WrongCa = Join-Path $Folder 'wrong-ca' }
}

Export-ModuleMember -Function 'New-NbdTestCertificates'
