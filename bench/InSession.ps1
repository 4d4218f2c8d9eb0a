#Requires -Version 7.0
<#
.SYNOPSIS
    Times Convert-QcowImage the way a runbook runs it: one PowerShell session, the module imported once.

.DESCRIPTION
    Imports QcowPS once, warms every conversion on a small image (so that JIT compilation and the
    module's first-call costs are paid before the clock runs), then takes the rows in turn: for each
    run and each row, `qemu-img convert` as a whole process and `Measure-Command` around
    `Convert-QcowImage` in this session, in alternating order. Medians. Called by bench/run.ps1 (which prepares the data
    and passes the rows), or by hand with -Rows as JSON.

    The session's peak working set is read after each row: it only grows, so a row's figure is the
    most the session has needed up to and including that row.

    QCOWPS_KERNEL_COPY (Auto, Always, Never) is honoured by the module, so the same script times
    the conversions with and without copy_file_range.
#>
[CmdletBinding(PositionalBinding = $false)]
param(
    [Parameter(Mandatory)][string]$RowsJson,
    [int]$Runs = 3,
    [Parameter(Mandatory)][string]$OutDir,
    [Parameter(Mandatory)][string]$WarmSource
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
$repo = Split-Path -Parent $PSScriptRoot
Import-Module (Join-Path $repo 'QcowPS.psd1')
$ProgressPreference = 'SilentlyContinue'
$rows = $RowsJson | ConvertFrom-Json
function Get-Median($Values) { ($Values | Sort-Object)[[int][Math]::Floor(@($Values).Count / 2)] }
function Invoke-QcowPSRow($Row, [string]$Source, [string]$Destination) {
    $p = @{ LiteralPath = $Source; Destination = $Destination; Force = $true }
    foreach ($prop in $Row.Ps.PSObject.Properties) { $p[$prop.Name] = $prop.Value }
    Convert-QcowImage @p
}

# Warm-up: every row's conversion once on a small image of the same kind, so each code path is compiled.
$warm = Join-Path $OutDir 'warm'
New-Item -ItemType Directory -Force -Path $warm | Out-Null
$warmRaw = Join-Path $warm 'warm.raw'
& qemu-img convert -f raw -O raw $WarmSource $warmRaw
& qemu-img convert -f raw -O qcow2 $WarmSource (Join-Path $warm 'warm-plain.qcow2')
& qemu-img convert -f raw -c -O qcow2 $WarmSource (Join-Path $warm 'warm-zlib.qcow2')
foreach ($r in $rows) {
    $src = Join-Path $warm $r.WarmName
    Invoke-QcowPSRow $r $src (Join-Path $warm 'warm.out') | Out-Null
}

$times = @{}
foreach ($r in $rows) { $times[$r.Name] = @{ Qemu = [Collections.Generic.List[double]]::new(); Ps = [Collections.Generic.List[double]]::new() } }
$qemuOut = Join-Path $OutDir 'qemu-session.out'
$psOut = Join-Path $OutDir 'qcowps-session.out'
$results = [ordered]@{}
# Whichever tool runs second in a pair was measured up to 5x slower on this virtual machine (0.26 s
# against 1.4 s for the same QcowPS conversion right after qemu-img wrote its 764 MiB output; qemu-img
# suffers the same after QcowPS), so the order alternates from run to run: odd runs take qemu-img
# first, even runs QcowPS first, and the medians see both positions.
function Measure-QemuRow($Row) {
    Remove-Item $qemuOut -ErrorAction Ignore
    & sync
    $qemuArgs = @($Row.Qemu)
    $w = [Diagnostics.Stopwatch]::StartNew()
    & qemu-img convert @qemuArgs $Row.Src $qemuOut
    $w.Stop()
    if ($LASTEXITCODE) { throw "qemu-img failed on $($Row.Name)" }
    $times[$Row.Name].Qemu.Add($w.Elapsed.TotalSeconds)
}
function Measure-QcowPSRow($Row) {
    Remove-Item $psOut -ErrorAction Ignore
    & sync
    $t = Measure-Command { Invoke-QcowPSRow $Row $Row.Src $psOut | Out-Null }
    $times[$Row.Name].Ps.Add($t.TotalSeconds)
}
foreach ($i in 1..$Runs) {
    foreach ($r in $rows) {
        # Deleting the previous output and writing back dirty pages happen before the clock starts.
        if ($i % 2 -eq 1) { Measure-QemuRow $r; Measure-QcowPSRow $r }
        else { Measure-QcowPSRow $r; Measure-QemuRow $r }

        if ($i -eq $Runs) {
            & qemu-img compare $qemuOut $psOut *> $null
            $same = $LASTEXITCODE -eq 0
            $results[$r.Name] = [pscustomobject]@{
                Conversion           = $r.Name
                'qemu-img s'         = [Math]::Round((Get-Median $times[$r.Name].Qemu), 3)
                'QcowPS in session s' = [Math]::Round((Get-Median $times[$r.Name].Ps), 3)
                'speed-up'           = [Math]::Round((Get-Median $times[$r.Name].Qemu) / (Get-Median $times[$r.Name].Ps), 2)
                'qemu-img MiB'       = [Math]::Round((Get-Item $qemuOut).Length / 1MB, 1)
                'QcowPS MiB'         = [Math]::Round((Get-Item $psOut).Length / 1MB, 1)
                'size ratio'         = [Math]::Round((Get-Item $psOut).Length / [Math]::Max([long]1, [long](Get-Item $qemuOut).Length), 4)
                'session peak MiB'   = [Math]::Round([Diagnostics.Process]::GetCurrentProcess().PeakWorkingSet64 / 1MB, 0)
                'same data'          = if ($same) { 'yes' } else { 'NO' }
                'qemu-img runs'      = ($times[$r.Name].Qemu | ForEach-Object { [Math]::Round($_, 3) }) -join ' '
                'QcowPS runs'        = ($times[$r.Name].Ps | ForEach-Object { [Math]::Round($_, 3) }) -join ' '
            }
        }
    }
}
Remove-Item $qemuOut, $psOut -ErrorAction Ignore
Remove-Item -Recurse -Force $warm
$results.Values | ConvertTo-Json
