#Requires -Version 7.0
<#
.SYNOPSIS
    Benchmarks Convert-QcowImage against qemu-img convert on the same data in the same run.

.DESCRIPTION
    Prepares (once, in bench/data, ignored by git) a 3 GiB raw disk holding an ext4 file system
    filled from /usr/share/dotnet and /usr/share/doc (mke2fs -t ext4 -d): real files, zeros and
    free space. Then times each conversion with qemu-img and with QcowPS (a fresh `dotnet pwsh`
    process running the cmdlet, so start-up and module load count), several runs each, and prints
    the medians, the ratio, both output sizes and QcowPS's peak memory.

.EXAMPLE
    dotnet tool restore && dotnet build -c Release && dotnet pwsh bench/run.ps1 -Runs 3
#>
[CmdletBinding(PositionalBinding = $false)]
param(
    [int]$Runs = 3,
    [string]$DataDir = (Join-Path $PSScriptRoot 'data'),
    [string[]]$Row
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
$repo = Split-Path -Parent $PSScriptRoot
$module = Join-Path $repo 'QcowPS.psd1'
if (-not (Test-Path (Join-Path $repo 'bin/QcowPS.dll'))) { throw "Build first: dotnet build -c Release" }
foreach ($tool in 'qemu-img', 'mke2fs') {
    if (-not (Get-Command $tool -ErrorAction Ignore)) { throw "$tool is missing: apt-get install -y qemu-utils e2fsprogs" }
}
New-Item -ItemType Directory -Force -Path $DataDir | Out-Null
$raw = Join-Path $DataDir 'disk.raw'
$plain = Join-Path $DataDir 'disk-plain.qcow2'
$zlib = Join-Path $DataDir 'disk-zlib.qcow2'

# --- data ------------------------------------------------------------------------------------------
if (-not (Test-Path $raw)) {
    Write-Host "Preparing $raw (3 GiB ext4 with /usr/share/dotnet and /usr/share/doc)..."
    $staging = Join-Path $DataDir 'staging'
    Remove-Item -Recurse -Force $staging -ErrorAction Ignore
    New-Item -ItemType Directory -Path $staging | Out-Null
    & cp -a /usr/share/dotnet (Join-Path $staging 'dotnet')
    & cp -a /usr/share/doc (Join-Path $staging 'doc')
    & truncate -s 3G "$raw.tmp"
    & mke2fs -q -F -t ext4 -d $staging "$raw.tmp"
    if ($LASTEXITCODE -ne 0) { throw "mke2fs failed" }
    Remove-Item -Recurse -Force $staging
    Move-Item "$raw.tmp" $raw
}
if (-not (Test-Path $plain)) { & qemu-img convert -O qcow2 $raw $plain }
if (-not (Test-Path $zlib)) { & qemu-img convert -c -O qcow2 $raw $zlib }

# --- rows ------------------------------------------------------------------------------------------
$out = Join-Path $DataDir 'out'
New-Item -ItemType Directory -Force -Path $out | Out-Null
$rows = @(
    @{ Name = 'raw -> qcow2';                Src = $raw;   Qemu = @('-f', 'raw', '-O', 'qcow2');                          Ps = "-Format Raw" }
    @{ Name = 'raw -> qcow2 compressed zlib'; Src = $raw;  Qemu = @('-f', 'raw', '-c', '-O', 'qcow2');                    Ps = "-Format Raw -Compress" }
    @{ Name = 'raw -> qcow2 compressed zstd'; Src = $raw;  Qemu = @('-f', 'raw', '-c', '-O', 'qcow2', '-o', 'compression_type=zstd'); Ps = "-Format Raw -Compress -CompressionType Zstd" }
    @{ Name = 'zlib qcow2 -> raw';           Src = $zlib;  Qemu = @('-O', 'raw');                                          Ps = "-DestinationFormat Raw" }
    @{ Name = 'plain qcow2 -> raw';          Src = $plain; Qemu = @('-O', 'raw');                                          Ps = "-DestinationFormat Raw" }
)
if ($Row) {
    $patterns = $Row | ForEach-Object { $_ -split ',' } | ForEach-Object { $_.Trim() }  # -File passes 'a,b' as one string
    $rows = $rows | Where-Object { $n = $_.Name; $patterns | Where-Object { $n -like $_ } }
}

function Measure-Median([scriptblock]$Action, [string]$Output) {
    $times = foreach ($i in 1..$Runs) {
        # Deleting the previous output and writing back dirty pages happen before the clock starts.
        Remove-Item $Output -ErrorAction Ignore
        & sync
        $watch = [Diagnostics.Stopwatch]::StartNew()
        & $Action
        $watch.Stop()
        $watch.Elapsed.TotalSeconds
    }
    ($times | Sort-Object)[[int][Math]::Floor($Runs / 2)]
}

# The PowerShell that runs this script, started directly (as an installed pwsh starts); `dotnet pwsh`
# would add the .NET CLI's tool-manifest lookup (about 0.35 s here) to every run.
$pwshExe = Join-Path $PSHOME 'pwsh'
$pwshDll = Join-Path $PSHOME 'pwsh.dll'
$pwshCommand = if (Test-Path $pwshExe) { @($pwshExe) } else { @('dotnet', $pwshDll) }
Write-Host "QcowPS runs in: $($pwshCommand -join ' ')"

$results = foreach ($r in $rows) {
    $qemuOut = Join-Path $out 'qemu.out'
    $psOut = Join-Path $out 'qcowps.out'
    Write-Host "== $($r.Name)"
    $qemuArgs = $r.Qemu
    $qemuTime = Measure-Median { & qemu-img convert @qemuArgs $r.Src $qemuOut; if ($LASTEXITCODE) { throw 'qemu-img failed' } } $qemuOut
    $peakFile = Join-Path $out 'peak.txt'
    $engineFile = Join-Path $out 'engine.txt'
    # The child writes its bookkeeping with .NET calls: Set-Content would autoload a module and add its start-up to the time.
    $script = "Import-Module '$module'; `$r = Convert-QcowImage -LiteralPath '$($r.Src)' -Destination '$psOut' $($r.Ps) -Force; " +
        "[IO.File]::WriteAllText('$peakFile', [Diagnostics.Process]::GetCurrentProcess().PeakWorkingSet64); " +
        "[IO.File]::AppendAllText('$engineFile', [string]`$r.Duration.TotalSeconds + [Environment]::NewLine)"
    Remove-Item $engineFile -ErrorAction Ignore
    Push-Location $repo
    try {
        $exe, $rest = $pwshCommand
        $psTime = Measure-Median { & $exe @rest -NoProfile -NonInteractive -Command $script; if ($LASTEXITCODE) { throw 'QcowPS failed' } } $psOut
    } finally { Pop-Location }
    # Same guest data: checked once per row.
    $compare = & qemu-img compare $qemuOut $psOut 2>&1
    [pscustomobject]@{
        Conversion      = $r.Name
        'qemu-img s'    = [Math]::Round($qemuTime, 2)
        'QcowPS s'      = [Math]::Round($psTime, 2)
        'speed-up'      = [Math]::Round($qemuTime / $psTime, 2)
        'in-cmdlet s'   = [Math]::Round(((Get-Content $engineFile | ForEach-Object { [double]$_ }) | Sort-Object)[[int][Math]::Floor($Runs / 2)], 2)
        'qemu-img MiB'  = [Math]::Round((Get-Item $qemuOut).Length / 1MB, 1)
        'QcowPS MiB'    = [Math]::Round((Get-Item $psOut).Length / 1MB, 1)
        'size ratio'    = [Math]::Round((Get-Item $psOut).Length / [Math]::Max([long]1, [long](Get-Item $qemuOut).Length), 3)
        'peak MiB'      = [Math]::Round([long](Get-Content $peakFile) / 1MB, 0)
        'same data'     = if ($LASTEXITCODE -eq 0) { 'yes' } else { "NO: $compare" }
    }
    Remove-Item $qemuOut, $psOut -ErrorAction Ignore
}
$results | Format-Table -AutoSize | Out-String -Width 200 | Write-Host
"Runs: $Runs (median). Machine: $([Environment]::ProcessorCount) cores, $(if (Test-Path /proc/meminfo) { [Math]::Round(([long]((Get-Content /proc/meminfo -TotalCount 1) -replace '\D', '')) / 1MB) } else { '?' }) GiB; $(qemu-img --version | Select-Object -First 1); $(Get-Date -Format 'yyyy-MM-dd')" | Write-Host
$results
