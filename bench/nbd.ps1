#Requires -Version 7.0
<#
.SYNOPSIS
    Benchmarks Start-QcowNbdServer against qemu-nbd, same data, same run: nbdcopy of the export to
    null:, and nbdinfo --map of a 1 TiB image with two data runs.

.DESCRIPTION
    Prepares (once, in bench/data/nbd, ignored by git) a raw disk holding an ext4 file system filled
    from -Source (mke2fs -t ext4 -d), and from it a plain and a zlib-compressed qcow2 (qemu-img
    convert, convert -c). For each image and each run, in turn: qemu-nbd -r -t -e 0 serving it on a
    Unix socket, and Start-QcowNbdServer -ReadOnly in this session; the time is that of the client
    process (`nbdcopy URI null:` or `nbdinfo --map URI`), the server already listening. Medians,
    and the ratio qemu-nbd time / QcowPS time (above 1: QcowPS is faster).

.EXAMPLE
    dotnet tool restore && dotnet build -c Release && dotnet pwsh bench/nbd.ps1 -Runs 5
#>
[CmdletBinding(PositionalBinding = $false)]
param(
    [int]$Runs = 5,
    [string]$DataDir = (Join-Path $PSScriptRoot 'data/nbd'),
    # What fills the file system: /usr/share/doc (124 MiB here) is the small data set; add
    # /usr/share/dotnet for the benchmark's full one.
    [string[]]$Source = @('/usr/share/doc'),
    [string]$DiskSize = '1G'
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
# Under `pwsh -File`, "-Source a,b" arrives as one string: split it as -Command would have.
$Source = @($Source | ForEach-Object { $_ -split ',' } | Where-Object { $_ })
$repo = Split-Path -Parent $PSScriptRoot
Import-Module (Join-Path $repo 'QcowPS.psd1')
Import-Module (Join-Path $repo 'tests/Pester/TestHelpers.psm1')  # Wait-UnixSocketListening
$env:PATH = "$($env:PATH):/usr/sbin:/sbin"
foreach ($tool in 'qemu-img', 'qemu-io', 'qemu-nbd', 'nbdcopy', 'nbdinfo', 'mke2fs') {
    if (-not (Get-Command $tool -ErrorAction Ignore)) { throw "$tool is missing: apt-get install -y qemu-utils libnbd-bin e2fsprogs" }
}
New-Item -ItemType Directory -Force -Path $DataDir | Out-Null

function Invoke-Checked([string]$Tool, [string[]]$Arguments) {
    $out = & $Tool @Arguments 2>&1
    if ($LASTEXITCODE -ne 0) { throw "$Tool $($Arguments -join ' ') failed: $out" }
}

# --- data ---------------------------------------------------------------------------------------
$raw = Join-Path $DataDir 'disk.raw'
$plain = Join-Path $DataDir 'plain.qcow2'
$zlib = Join-Path $DataDir 'zlib.qcow2'
$huge = Join-Path $DataDir 'huge.qcow2'
if (-not (Test-Path $raw)) {
    $tree = Join-Path $DataDir 'tree'
    New-Item -ItemType Directory -Force -Path $tree | Out-Null
    foreach ($s in $Source) { Invoke-Checked 'cp' @('-a', $s, $tree) }
    Invoke-Checked 'mke2fs' @('-q', '-t', 'ext4', '-d', $tree, $raw, $DiskSize)
    Remove-Item -Recurse -Force $tree
}
if (-not (Test-Path $plain)) { Invoke-Checked 'qemu-img' @('convert', '-O', 'qcow2', $raw, $plain) }
if (-not (Test-Path $zlib)) { Invoke-Checked 'qemu-img' @('convert', '-c', '-O', 'qcow2', '-o', 'compression_type=zlib', $raw, $zlib) }
if (-not (Test-Path $huge)) {
    Invoke-Checked 'qemu-img' @('create', '-q', '-f', 'qcow2', $huge, '1T')
    Invoke-Checked 'qemu-io' @('-f', 'qcow2', '-c', 'write -P 0x11 0 1M', '-c', 'write -P 0x22 512G 1M', $huge)
}

# --- servers ------------------------------------------------------------------------------------
function Start-QemuNbd([string]$Image, [string]$Socket) {
    $p = Start-Process -FilePath 'qemu-nbd' -ArgumentList @('-r', '-t', '-e', '0', '-f', 'qcow2', '-k', $Socket, $Image) -PassThru
    # Listening, not just bound: the socket file exists before qemu-nbd accepts connections.
    try { Wait-UnixSocketListening -Socket $Socket -Process $p -Tool 'qemu-nbd' } catch { if (-not $p.HasExited) { $p.Kill() }; throw }
    return $p
}

function Measure-Client([string]$Tool, [string[]]$Arguments) {
    $clock = [Diagnostics.Stopwatch]::StartNew()
    Invoke-Checked $Tool $Arguments
    return $clock.Elapsed.TotalSeconds
}

function Measure-Pair([string]$Image, [scriptblock]$Client) {
    $qemuTimes = @(); $oursTimes = @()
    for ($i = 0; $i -lt $Runs; $i++) {
        $sock = Join-Path $DataDir "qemu-$i.sock"
        $p = Start-QemuNbd $Image $sock
        try { $qemuTimes += & $Client "nbd+unix:///?socket=$sock" } finally { $p.Kill(); $p.WaitForExit(); Remove-Item -Force $sock -ErrorAction Ignore }
        $sock = Join-Path $DataDir "ours-$i.sock"
        $server = Start-QcowNbdServer -LiteralPath $Image -ReadOnly -Socket $sock
        try { $oursTimes += & $Client $server.Uri } finally { $server | Stop-QcowNbdServer }
    }
    $median = { param($t) $s = @($t | Sort-Object); $s[[int][Math]::Floor(($s.Count - 1) / 2)] }
    $q = & $median $qemuTimes; $o = & $median $oursTimes
    [pscustomobject]@{ Qemu = $q; Ours = $o; Ratio = $q / $o; QemuAll = ($qemuTimes | ForEach-Object { '{0:N2}' -f $_ }) -join ' '; OursAll = ($oursTimes | ForEach-Object { '{0:N2}' -f $_ }) -join ' ' }
}

$copy = { param($uri) Measure-Client 'nbdcopy' @($uri, 'null:') }
$map = { param($uri) Measure-Client 'nbdinfo' @('--map', $uri) }
$rows = @(
    @{ Name = 'nbdcopy URI null: (plain qcow2)'; Image = $plain; Client = $copy }
    @{ Name = 'nbdcopy URI null: (zlib qcow2)'; Image = $zlib; Client = $copy }
    @{ Name = 'nbdinfo --map (1 TiB, two data runs)'; Image = $huge; Client = $map }
)
"Data: $DiskSize ext4 from $($Source -join ', '); plain $([Math]::Round((Get-Item $plain).Length / 1MB)) MiB, zlib $([Math]::Round((Get-Item $zlib).Length / 1MB)) MiB; $Runs runs, medians"
''
'| Client | qemu-nbd s | QcowPS s | ratio (qemu-nbd / QcowPS) | qemu-nbd runs | QcowPS runs |'
'|---|---:|---:|---:|---|---|'
foreach ($r in $rows) {
    $m = Measure-Pair $r.Image $r.Client
    '| {0} | {1:N3} | {2:N3} | {3:N2} | {4} | {5} |' -f $r.Name, $m.Qemu, $m.Ours, $m.Ratio, $m.QemuAll, $m.OursAll
}
