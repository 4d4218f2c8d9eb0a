#Requires -Version 7.0
<#
.SYNOPSIS
    Bitmap benchmark (issue 12): reading a dirty map and an incremental backup, QcowPS against QEMU on
    the same image in the same run, as ratios (median of -Runs runs, taken in turn).

.DESCRIPTION
    Image: a 16 GiB qcow2 with a 512-byte-granularity bitmap (4 MiB of bitmap data) that qemu-io
    dirtied with 4000 scattered 4 KiB writes of random data.
    1. The dirty map: qemu-nbd -B + nbdinfo --map=qemu:dirty-bitmap (process start included) against
       Get-QcowBitmap -Extent in this PowerShell (module already imported).
    2. Copying with bitmaps: qemu-img convert --bitmaps against Convert-QcowImage -Bitmaps.
    3. The increment: Convert-QcowImage -Bitmap over a full backup (QEMU has no offline equivalent; its
       time is shown against the full qemu-img convert of the same source).

.EXAMPLE
    dotnet pwsh -NoProfile -File bench/bitmaps.ps1 -Runs 5
#>
param([int]$Runs = 5)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
Import-Module (Join-Path (Split-Path -Parent $PSScriptRoot) 'QcowPS.psd1')
$dir = Join-Path ([IO.Path]::GetTempPath()) ('qcowps-bench-bitmaps-' + [Guid]::NewGuid().ToString('N').Substring(0, 8))
New-Item -ItemType Directory $dir | Out-Null
try {
    $img = Join-Path $dir 'vm.qcow2'
    & qemu-img create -q -f qcow2 $img 16G
    & qemu-io -f qcow2 -c 'write -P 1 0 64M' $img | Out-Null
    $full = Join-Path $dir 'full.qcow2'
    & qemu-img convert -f qcow2 -O qcow2 $img $full
    & qemu-img bitmap --add -g 512 $img b
    $random = [Random]::new(1)
    $commands = 1..4000 | ForEach-Object { '-c'; "write -P $($random.Next(2, 255)) $([long]$random.Next(0, 4194303) * 4096) 4k" }
    & qemu-io -f qcow2 @commands $img | Out-Null

    function Time([scriptblock]$block) { $w = [Diagnostics.Stopwatch]::StartNew(); & $block | Out-Null; $w.Elapsed.TotalSeconds }
    function Median($xs) { $s = @($xs | Sort-Object); $s[[int][Math]::Floor($s.Count / 2)] }
    $t = @{ nbd = @(); ext = @(); qconv = @(); oconv = @(); inc = @() }
    foreach ($r in 1..$Runs) {
        $t.nbd += Time { & /usr/bin/nbdinfo --map=qemu:dirty-bitmap:b -- [ /usr/bin/qemu-nbd -r -f qcow2 -B b $img ] }
        $t.ext += Time { Get-QcowBitmap $img -Name b -Extent }
        $t.qconv += Time { & qemu-img convert -f qcow2 -O qcow2 --bitmaps $img (Join-Path $dir "q$r.qcow2") }
        $t.oconv += Time { Convert-QcowImage $img -Destination (Join-Path $dir "o$r.qcow2") -Bitmaps }
        $t.inc += Time { Convert-QcowImage $img -Destination (Join-Path $dir "i$r.qcow2") -Bitmap b -BackingFile full.qcow2 }
    }
    $runsCount = @(Get-QcowBitmap $img -Name b -Extent).Count
    $incSize = (Get-Item (Join-Path $dir 'i1.qcow2')).Length
    '| Work | QEMU s | QcowPS s | speed-up |'
    '|---|---:|---:|---:|'
    '| dirty map, {0} runs (nbdinfo + qemu-nbd -B vs Get-QcowBitmap -Extent) | {1:F3} | {2:F3} | {3:F2} |' -f $runsCount, (Median $t.nbd), (Median $t.ext), ((Median $t.nbd) / (Median $t.ext))
    '| convert with bitmaps (qemu-img convert --bitmaps vs Convert-QcowImage -Bitmaps) | {0:F3} | {1:F3} | {2:F2} |' -f (Median $t.qconv), (Median $t.oconv), ((Median $t.qconv) / (Median $t.oconv))
    '| increment (Convert-QcowImage -Bitmap, {0:N0} bytes) vs full qemu-img convert --bitmaps | {1:F3} | {2:F3} | {3:F2} |' -f $incSize, (Median $t.qconv), (Median $t.inc), ((Median $t.qconv) / (Median $t.inc))
}
finally {
    Remove-Item -Recurse -Force $dir
}
