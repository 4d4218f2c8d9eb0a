#Requires -Version 7.0
<#
.SYNOPSIS
    Times Read-QcowBlock -OutFile of whole images in one session: kernel copy Always, Never, and qemu-img.

.DESCRIPTION
    Imports QcowPS once, warms Read-QcowBlock -OutFile on a small image with both kernel-copy modes,
    then for each source takes `Read-QcowBlock -OutFile` with QCOWPS_KERNEL_COPY=Always, with
    QCOWPS_KERNEL_COPY=Never, and `qemu-img convert -O raw` as a whole process. The order rotates
    from run to run (run 1: Always, Never, qemu-img; run 2: Never, qemu-img, Always; ...), because
    whichever tool goes after another's big write is penalised on this VM (see InSession.ps1).
    Outputs are deleted and `sync` runs before each clock starts. Medians; the last run's three
    outputs are compared with cmp.

.EXAMPLE
    dotnet pwsh -NoProfile -File bench/ReadOutFile.ps1 -Runs 6 -OutDir /tmp/out `
        -Sources /work/benchdata/run/disk-plain.qcow2, /work/benchdata/run/disk.raw -WarmSource /work/benchdata/run/warm-source.raw
#>
[CmdletBinding(PositionalBinding = $false)]
param(
    [Parameter(Mandatory)][string[]]$Sources,
    [int]$Runs = 6,
    [Parameter(Mandatory)][string]$OutDir,
    [Parameter(Mandatory)][string]$WarmSource
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
# pwsh -File passes a, b as one string.
$Sources = @($Sources -split ',' | ForEach-Object Trim | Where-Object { $_ })
$repo = Split-Path -Parent $PSScriptRoot
Import-Module (Join-Path $repo 'QcowPS.psd1')
$ProgressPreference = 'SilentlyContinue'
function Get-Median($Values) { ($Values | Sort-Object)[[int][Math]::Floor(@($Values).Count / 2)] }
function Get-FormatOf([string]$Path) { if ($Path -like '*.raw') { 'Raw' } else { 'Auto' } }
New-Item -ItemType Directory -Force -Path $OutDir | Out-Null

$tools = 'Always', 'Never', 'qemu-img'
function Invoke-Tool([string]$Tool, [string]$Source, [string]$Output) {
    Remove-Item $Output -ErrorAction Ignore
    & sync
    if ($Tool -eq 'qemu-img') {
        $f = if ((Get-FormatOf $Source) -eq 'Raw') { 'raw' } else { 'qcow2' }
        $w = [Diagnostics.Stopwatch]::StartNew()
        & qemu-img convert -f $f -O raw $Source $Output
        $w.Stop()
        if ($LASTEXITCODE) { throw "qemu-img failed on $Source" }
        return $w.Elapsed.TotalSeconds
    }
    $env:QCOWPS_KERNEL_COPY = $Tool
    try {
        $fmt = Get-FormatOf $Source
        (Measure-Command { Read-QcowBlock -LiteralPath $Source -Format $fmt -OutFile $Output -Force }).TotalSeconds
    }
    finally { Remove-Item Env:QCOWPS_KERNEL_COPY }
}

# Warm-up: both modes once on a small image of each kind, so each code path is compiled.
$warmQcow = Join-Path $OutDir 'warm.qcow2'
& qemu-img convert -f raw -O qcow2 $WarmSource $warmQcow
foreach ($w in $WarmSource, $warmQcow) { foreach ($t in 'Always', 'Never') { Invoke-Tool $t $w (Join-Path $OutDir 'warm.out') | Out-Null } }
Remove-Item (Join-Path $OutDir 'warm.out'), $warmQcow -ErrorAction Ignore

$results = foreach ($src in $Sources) {
    $times = @{}
    foreach ($t in $tools) { $times[$t] = [Collections.Generic.List[double]]::new() }
    foreach ($i in 0..($Runs - 1)) {
        foreach ($k in 0..2) {
            $t = $tools[($i + $k) % 3]
            $times[$t].Add((Invoke-Tool $t $src (Join-Path $OutDir "$t.out")))
        }
    }
    $same = foreach ($t in 'Always', 'Never') {
        & cmp -s (Join-Path $OutDir "$t.out") (Join-Path $OutDir 'qemu-img.out')
        $LASTEXITCODE -eq 0
    }
    $row = [ordered]@{ Source = Split-Path -Leaf $src }
    foreach ($t in $tools) { $row["$t s"] = [Math]::Round((Get-Median $times[$t]), 3) }
    $row['Always vs qemu-img'] = [Math]::Round($row['qemu-img s'] / $row['Always s'], 2)
    $row['Never vs qemu-img'] = [Math]::Round($row['qemu-img s'] / $row['Never s'], 2)
    $row['same as qemu-img'] = if ($same -notcontains $false) { 'yes' } else { 'NO' }
    $row['session peak MiB'] = [Math]::Round([Diagnostics.Process]::GetCurrentProcess().PeakWorkingSet64 / 1MB, 0)
    foreach ($t in $tools) { $row["$t runs"] = ($times[$t] | ForEach-Object { [Math]::Round($_, 3) }) -join ' ' }
    [pscustomobject]$row
    foreach ($t in $tools) { Remove-Item (Join-Path $OutDir "$t.out") -ErrorAction Ignore }
}
$results | ConvertTo-Json
