#Requires -Version 5.1
<#
.SYNOPSIS
    A tour of QcowPS: every cmdlet, as an admin would use it, in a temporary folder. Needs no QEMU.
.EXAMPLE
    dotnet tool restore && dotnet build -c Release && dotnet pwsh -NoProfile -File examples/demo.ps1
#>
$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $PSScriptRoot '../QcowPS.psd1') -Force

function Step([string]$Text) { Write-Host "`n### $Text" -ForegroundColor Cyan }

$work = Join-Path ([IO.Path]::GetTempPath()) ("qcowps-demo-" + [Guid]::NewGuid().ToString('N').Substring(0, 8))
New-Item -ItemType Directory -Path $work | Out-Null
Push-Location $work
try {
    Step 'New-QcowImage: a 10 GiB thin disk, a zstd one, and an exabyte one (2 MiB clusters)'
    New-QcowImage base.qcow2 10GB | Format-Table
    New-QcowImage fast.qcow2 '4G' -CompressionType Zstd -LazyRefcounts | Format-Table
    New-QcowImage huge.qcow2 -Size 1024PB -ClusterSize 2MB | Format-Table Name, VirtualSize, FileSize

    Step 'Write-QcowBlock: data from a byte array, from a file, zeros, and a discard'
    $text = [Text.Encoding]::ASCII.GetBytes('Hello from QcowPS! ' * 1000)
    Write-QcowBlock base.qcow2 -Offset 1MB -Data $text
    [IO.File]::WriteAllBytes((Join-Path $work 'payload.bin'), [byte[]](1..255) * 800)
    Write-QcowBlock base.qcow2 -Offset 8MB -InputFile payload.bin -PassThru | Select-Object -First 2 | Format-Table
    Write-QcowBlock base.qcow2 -Offset 1MB -Zero -Length 4KB
    Write-QcowBlock base.qcow2 -Offset 8MB -Discard -Length 64KB   # like qemu-io -c 'discard 8M 64k'

    Step 'Get-QcowInfo: the inventory, as objects (sorted, filtered, exported)'
    Get-ChildItem *.qcow2 | Get-QcowInfo | Sort-Object VirtualSize | Format-Table
    Get-ChildItem *.qcow2 | Get-QcowInfo | Where-Object LazyRefcounts | Select-Object Name, CompressionType, RefcountBits
    Get-ChildItem *.qcow2 | Get-QcowInfo | Export-Csv inventory.csv -NoTypeInformation
    "inventory.csv: $((Import-Csv inventory.csv).Count) rows"

    Step 'Read-QcowBlock: pieces with their cluster type, raw bytes, or a raw file'
    Read-QcowBlock base.qcow2 -Offset 1MB -Length 8KB | Format-Table
    $bytes = Read-QcowBlock base.qcow2 -Offset (1MB + 4KB) -Length 19 -Raw
    "Raw bytes: '$([Text.Encoding]::ASCII.GetString($bytes))'"
    Read-QcowBlock base.qcow2 -Length 16MB -OutFile first16m.raw
    "first16m.raw: $((Get-Item first16m.raw).Length) bytes"

    Step 'New-QcowImage -BackingFile: an overlay; writes go to the overlay only'
    New-QcowImage overlay.qcow2 -BackingFile base.qcow2 | Format-Table Name, VirtualSize, BackingFile, BackingFormat, BackingChainDepth
    Write-QcowBlock overlay.qcow2 -Offset 9MB -Data ([byte[]]::new(4096))
    Get-QcowInfo overlay.qcow2 -BackingChain | Format-Table Name, BackingFile, BackingChainDepth

    Step 'Get-QcowCluster: the allocation map like qemu-img map, and L2 entries decoded'
    Get-QcowCluster overlay.qcow2 -Extent | Format-Table
    Get-QcowCluster base.qcow2 -Allocated | Format-Table

    Step 'Get-QcowTable: the metadata tables, entry by entry'
    Get-QcowTable base.qcow2 -Table L1 -NonZero | Format-Table
    Get-QcowTable base.qcow2 -Table RefcountBlock -NonZero | Select-Object -First 6 | Format-Table

    Step 'Snapshots: take, change, list, revert, delete'
    Write-QcowBlock base.qcow2 -Offset 1MB -Data ([Text.Encoding]::ASCII.GetBytes('original!'))
    New-QcowSnapshot base.qcow2 -Name before-upgrade | Format-Table
    Write-QcowBlock base.qcow2 -Offset 1MB -Data ([Text.Encoding]::ASCII.GetBytes('upgraded!'))
    New-QcowSnapshot base.qcow2 -Name after-upgrade | Out-Null
    Get-QcowSnapshot base.qcow2 | Format-Table
    Get-QcowSnapshot base.qcow2 -Name before-* | Restore-QcowSnapshot -Confirm:$false
    "After restore: '$([Text.Encoding]::ASCII.GetString((Read-QcowBlock base.qcow2 -Offset 1MB -Length 9 -Raw)))'"
    Get-QcowSnapshot base.qcow2 -Name after-upgrade | Remove-QcowSnapshot -Confirm:$false   # deleting cannot be undone: it asks by default
    Get-QcowSnapshot base.qcow2 | Format-Table Id, Name

    Step 'Resize-QcowImage: grow, and shrink only when asked'
    Resize-QcowImage fast.qcow2 -Size 8GB | Format-Table Name, VirtualSize
    try { Resize-QcowImage fast.qcow2 -Size 1GB } catch { "Refused: $($_.Exception.Message)" }

    Step 'Test-QcowImage and Repair-QcowImage: like qemu-img check'
    Get-ChildItem *.qcow2 | ForEach-Object { '{0,-14} consistent: {1}' -f $_.Name, (Test-QcowImage $_.FullName) }
    Test-QcowImage base.qcow2 -Detailed | Format-List Path, IsConsistent, Corruptions, Leaks, AllocatedClusters, TotalClusters
    Repair-QcowImage base.qcow2 -Leaks | Format-Table Path, Leaks, LeaksFixed, Corruptions

    Step 'Convert-QcowImage: compress on every core; to raw; compare'
    Convert-QcowImage overlay.qcow2 -Destination flat.qcow2 -Compress | Format-Table
    Convert-QcowImage base.qcow2 -Destination base.raw -DestinationFormat Raw | Format-Table
    "Identical after conversion: $(Compare-QcowImage overlay.qcow2 flat.qcow2 -Quiet)"
    Write-QcowBlock flat.qcow2 -Offset 3MB -Data ([byte[]](42))
    Compare-QcowImage overlay.qcow2 flat.qcow2 | Format-Table

    Step 'Persistent bitmaps: New-/Get-/Clear-QcowBitmap; an incremental backup with Convert-QcowImage -Bitmap'
    Convert-QcowImage base.qcow2 -Destination full.qcow2 | Out-Null
    New-QcowBitmap base.qcow2 -Name 'backup' | Format-Table
    Write-QcowBlock base.qcow2 -Offset 1MB -Data ([byte[]](1..100))
    Get-QcowBitmap base.qcow2 -Name 'backup' -Extent | Format-Table
    Convert-QcowImage base.qcow2 -Destination inc1.qcow2 -Bitmap 'backup' -BackingFile full.qcow2 | Format-Table
    Clear-QcowBitmap base.qcow2 -Name 'backup'
    "Increment restores the source: $(Compare-QcowImage base.qcow2 inc1.qcow2 -Quiet)"

    Step 'Start-/Get-/Stop-QcowNbdServer: serve the disk over NBD, like qemu-nbd (nbdinfo, nbdcopy, qemu-img connect to the Uri)'
    $server = Start-QcowNbdServer base.qcow2 -ReadOnly -Socket (Join-Path $work 'base.sock')
    Get-QcowNbdServer | Format-Table
    $server | Stop-QcowNbdServer

    Step 'Errors are objects too: non-terminating per file, with stable ids'
    Get-QcowInfo base.qcow2, missing.qcow2 -ErrorAction SilentlyContinue -ErrorVariable problems | Format-Table Name, VirtualSize
    $problems | ForEach-Object { '{0} ({1}): {2}' -f $_.FullyQualifiedErrorId, $_.CategoryInfo.Category, $_.Exception.Message }

    # Inside the disk: a new GPT on a fresh disk, partitions and file systems (none on the blank demo disk), free space given back.
    New-QcowImage parts.qcow2 -Size 1GB | Out-Null
    New-QcowPartitionTable parts.qcow2 -Partition @{ Size = '100M'; Type = 'EFI System'; Name = 'esp' }, @{ Name = 'root' } | Format-Table
    Get-QcowPartition base.qcow2
    Get-QcowFileSystem base.qcow2
    Optimize-QcowImage base.qcow2 -WhatIf -WarningAction SilentlyContinue | Format-Table
}
finally {
    Pop-Location
    Remove-Item -Recurse -Force $work
}
Write-Host "`nDemo done; its temporary folder is removed." -ForegroundColor Green
