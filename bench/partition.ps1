#Requires -Version 7.0
<#
    New-QcowPartitionTable against sgdisk, in one PowerShell session (module loaded once): one GPT
    partition over a sparse 3 TiB raw disk (sgdisk -n 1:0:0 -t 1:8300 vs New-QcowPartitionTable -Format Raw),
    and New-QcowPartitionTable alone on 1 EiB and 2 EiB qcow2 images (no peer tool partitions those
    without a kernel block device). Medians of -Runs; prints a Markdown table for bench/RESULTS.md.
#>
param([int]$Runs = 5)
$ErrorActionPreference = 'Stop'
$env:PATH = "${env:PATH}:/usr/sbin:/sbin"
Import-Module (Join-Path $PSScriptRoot '../QcowPS.psd1')
$dir = Join-Path ([IO.Path]::GetTempPath()) ('qcowps-bench-part-' + [Guid]::NewGuid().ToString('N').Substring(0, 8))
New-Item -ItemType Directory -Path $dir | Out-Null
function Median([double[]]$v) { $s = $v | Sort-Object; $s[[int][Math]::Floor($s.Count / 2)] }
try {
    $sg = @(); $ours = @(); $exa = @(); $exa2 = @()
    # One warm-up call so that JIT time is not in the first sample.
    qemu-img create -q -f raw (Join-Path $dir 'warm.raw') 1G
    New-QcowPartitionTable -LiteralPath (Join-Path $dir 'warm.raw') -Format Raw | Out-Null
    for ($i = 0; $i -lt $Runs; $i++) {
        $a = Join-Path $dir "sg$i.raw"; $b = Join-Path $dir "qp$i.raw"
        qemu-img create -q -f raw $a 3T; qemu-img create -q -f raw $b 3T
        $sg += (Measure-Command { sgdisk -n 1:0:0 -t 1:8300 $a | Out-Null }).TotalMilliseconds
        $ours += (Measure-Command { New-QcowPartitionTable -LiteralPath $b -Format Raw | Out-Null }).TotalMilliseconds
        foreach ($size in '1E', '2E') {
            $q = Join-Path $dir "exa$size$i.qcow2"
            qemu-img create -q -f qcow2 -o cluster_size=2M $q $size
            $t = (Measure-Command { New-QcowPartitionTable -LiteralPath $q | Out-Null }).TotalMilliseconds
            if ($size -eq '1E') { $exa += $t } else { $exa2 += $t }
        }
        Remove-Item (Join-Path $dir '*')
    }
    '| Disk | sgdisk ms | New-QcowPartitionTable ms | ratio (sgdisk / ours) |'
    '|---|---:|---:|---:|'
    '| 3 TiB raw, one GPT partition | {0:N0} | {1:N0} | {2:N2} |' -f (Median $sg), (Median $ours), ((Median $sg) / (Median $ours))
    '| 1 EiB qcow2 (2 MiB clusters), one GPT partition | n/a | {0:N0} | n/a |' -f (Median $exa)
    '| 2 EiB qcow2 (2 MiB clusters), one GPT partition | n/a | {0:N0} | n/a |' -f (Median $exa2)
} finally {
    Remove-Item -Recurse -Force $dir
}
