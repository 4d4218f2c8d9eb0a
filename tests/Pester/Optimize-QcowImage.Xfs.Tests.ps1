#Requires -Version 7.0
<#
    Pester 5 tests of Optimize-QcowImage on XFS (v5 and v4): mkfs.xfs fills the file system from a
    protofile (two large files and 560 small ones, which stripe alignment spaces out so that AG 0's
    free-space B+tree has two levels), random "deleted file" bytes are written into the extents xfs_db
    calls free, and the file system goes into a GPT partition of a qcow2 image with 4 KiB clusters (so that
    every free block is a whole cluster). Afterwards the image must equal the one before with exactly the
    free blocks zeroed, xfs_repair -n and qemu-img check must be clean, and the stored data must shrink by
    exactly the garbage written. A dirty log, a bnobt block with a bad CRC, an AGF whose free count
    disagrees, a bnobt that reaches a block twice and one with absurd numrecs are refused, byte for byte.
    Without the tools the tests are skipped, except with CI=true.
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $GuestTools = @('qemu-img', 'sgdisk', 'mkfs.xfs', 'xfs_db', 'xfs_repair')
    $SkipGuest = Test-SkipWithoutGuestTools -Name $GuestTools
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-QcowPSModule | Out-Null
    $ProgressPreference = 'SilentlyContinue'
    $GuestTools = @('qemu-img', 'sgdisk', 'mkfs.xfs', 'xfs_db', 'xfs_repair')
    $PartitionOffset = 1MB
    $FsSize = 320MB

    # The protofile: big1 (5 MiB), big2 (3 MiB) and small1..small560 (9 blocks of 4 KiB each).
    function New-XfsProto([string]$Dir) {
        $files = Join-Path $Dir 'files'
        New-Item -ItemType Directory -Path $files | Out-Null
        $lines = @('boot', '0 0', 'd--755 0 0')
        $sizes = [ordered]@{ big1 = 5MB; big2 = 3MB }
        for ($i = 1; $i -le 560; $i++) { $sizes["small$i"] = 9 * 4KB }
        $seed = 1
        foreach ($name in $sizes.Keys) {
            $path = Join-Path $files "$name.bin"
            [IO.File]::WriteAllBytes($path, (New-RandomBytes -Length $sizes[$name] -Seed ($seed++)))
            $lines += "$name.bin ---644 0 0 $path"
        }
        $proto = Join-Path $Dir 'xfs.proto'
        Set-Content -LiteralPath $proto -Value ($lines + '$')
        $proto
    }

    # A fresh XFS image.
    function New-XfsVolume([string]$Name, [string[]]$MkfsOptions = @()) {
        $fs = Join-Path $dir "$Name.xfs"
        Invoke-QemuImg 'create', '-q', '-f', 'raw', $fs, "$($FsSize / 1MB)M" | Out-Null
        # sunit/swidth: files of 9 blocks start on 8-block stripe units, leaving 7-block holes between them.
        Invoke-GuestTool mkfs.xfs (@('-q', '-f', '-l', 'size=64m', '-d', 'agcount=4,sunit=64,swidth=64') + $MkfsOptions + @('-p', $proto, $fs)) | Out-Null
        $fs
    }

    # One xfs_db -x run (expert mode, writes allowed) of a list of -c commands.
    function Edit-XfsVolume([string]$Fs, [string[]]$Commands) {
        Invoke-GuestTool xfs_db (@('-x') + @($Commands | ForEach-Object { '-c', $_ }) + $Fs) | Out-Null
    }

    function Get-XfsField([string]$Fs, [string[]]$Commands, [string]$Name) {
        $text = Invoke-GuestTool xfs_db (@('-r') + @($Commands | ForEach-Object { '-c', $_ }) + $Fs)
        [long]([regex]::Match($text, "(?m)^$Name = (\d+)").Groups[1].Value)
    }

    # The free extents of the bnobt of every AG, as byte ranges of the file system: xfs_db freesp -d
    # lists them together with the blocks of the AG free list (AGFL), which are left out here.
    function Get-XfsFreeExtents([string]$Fs) {
        $blockSize = Get-XfsField $Fs 'sb 0', 'print blocksize' 'blocksize'
        $agBlocks = Get-XfsField $Fs 'sb 0', 'print agblocks' 'agblocks'
        $agCount = Get-XfsField $Fs 'sb 0', 'print agcount' 'agcount'
        $agfl = @{}
        for ($ag = 0; $ag -lt $agCount; $ag++) {
            $text = Invoke-GuestTool xfs_db '-r', '-c', "agf $ag", '-c', 'print flfirst fllast flcount', '-c', "agfl $ag", '-c', 'print bno', $Fs
            $first = [int]([regex]::Match($text, '(?m)^flfirst = (\d+)').Groups[1].Value)
            $count = [int]([regex]::Match($text, '(?m)^flcount = (\d+)').Groups[1].Value)
            $slots = @{}
            foreach ($m in [regex]::Matches($text, '(\d+):(\d+)')) { $slots[[int]$m.Groups[1].Value] = [long]$m.Groups[2].Value }
            $size = ([regex]::Match($text, 'bno\[0-(\d+)\]').Groups[1].Value -as [int]) + 1
            for ($i = 0; $i -lt $count; $i++) { $agfl["$ag/$($slots[($first + $i) % $size])"] = $true }
        }
        $extents = [Collections.Generic.List[object]]::new()
        $text = Invoke-GuestTool xfs_db '-r', '-c', 'freesp -d', $Fs
        foreach ($m in [regex]::Matches($text, '(?m)^\s+(\d+)\s+(\d+)\s+(\d+)\s*$')) {
            $ag = [long]$m.Groups[1].Value; $block = [long]$m.Groups[2].Value; $length = [long]$m.Groups[3].Value
            if ($length -eq 1 -and $agfl.ContainsKey("$ag/$block")) { continue }
            $extents.Add([pscustomobject]@{ Offset = ($ag * $agBlocks + $block) * $blockSize; Length = $length * $blockSize })
        }
        , $extents
    }

    # Random bytes in the first MiB of every free extent (what deleted files leave); returns the bytes written.
    function Add-Garbage([string]$Fs, $Extents) {
        $stream = [IO.File]::Open($Fs, [IO.FileMode]::Open, [IO.FileAccess]::Write)
        $random = [Random]::new(13)
        $written = 0L
        try {
            foreach ($e in $Extents) {
                $bytes = [byte[]]::new([Math]::Min($e.Length, 1MB))
                $random.NextBytes($bytes)
                $stream.Position = $e.Offset
                $stream.Write($bytes, 0, $bytes.Length)
                $written += $bytes.Length
            }
        } finally { $stream.Dispose() }
        $written
    }

    # The file system in partition 1 (at 1 MiB) of a GPT disk, as qcow2 with 4 KiB clusters.
    function New-XfsDisk([string]$Name, [string]$Fs) {
        $raw = Join-Path $dir "$Name.raw"
        Invoke-QemuImg 'create', '-q', '-f', 'raw', $raw, "$($FsSize / 1MB + 2)M" | Out-Null
        Invoke-GuestTool sgdisk '-n', "1:2048:+$($FsSize / 1MB)M", '-t', '1:8300', $raw | Out-Null
        Copy-FileRange -Path $Fs -Destination $raw -DestinationOffset $PartitionOffset
        $qcow = Join-Path $dir "$Name.qcow2"
        Invoke-QemuImg 'convert', '-O', 'qcow2', '-o', 'cluster_size=4096', $raw, $qcow | Out-Null
        Remove-Item -LiteralPath $raw
        $qcow
    }

    # The disk as raw, and its partition as a file system image of its own.
    function Export-XfsPartition([string]$Qcow, [string]$Name) {
        $raw = Export-QemuRaw -Path $Qcow -Destination (Join-Path $dir "$Name.export.raw")
        $part = Join-Path $dir "$Name.export.xfs"
        Copy-FileRange -Path $raw -Destination $part -Offset $PartitionOffset -Length $FsSize
        @{ Raw = $raw; Fs = $part }
    }

    # The disk as it must read after Optimize-QcowImage: the raw disk before, with exactly the free extents zeroed.
    function New-ExpectedRaw([string]$Raw, $Extents) {
        $stream = [IO.File]::Open($Raw, [IO.FileMode]::Open, [IO.FileAccess]::Write)
        $zeros = [byte[]]::new(1MB)
        try {
            foreach ($e in $Extents) {
                $stream.Position = $PartitionOffset + $e.Offset
                for ($left = $e.Length; $left -gt 0; $left -= $n) { $n = [Math]::Min($left, $zeros.Length); $stream.Write($zeros, 0, $n) }
            }
        } finally { $stream.Dispose() }
    }

    function Invoke-XfsRepairCheck([string]$Fs) {
        $text = Invoke-GuestTool xfs_repair '-n', '-f', $Fs -SuccessCode 0, 1
        @{ Exit = $LASTEXITCODE; Text = $text }
    }

    function Assert-OptimizedXfs([string]$Name, [string[]]$MkfsOptions) {
        $fs = New-XfsVolume $Name $MkfsOptions
        Get-XfsField $fs 'agf 0', 'print bnolevel' 'bnolevel' | Should -Be 2 -Because 'AG 0 must have a two-level bnobt for the walk to be tested'
        $extents = Get-XfsFreeExtents $fs
        $extents.Count | Should -BeGreaterThan 500
        $garbage = Add-Garbage $fs $extents
        $qcow = New-XfsDisk $Name $fs
        $before = Export-XfsPartition $qcow "$Name-before"
        New-ExpectedRaw $before.Raw $extents
        $storedBefore = Get-QemuDataBytes -Path $qcow

        $result = @(Optimize-QcowImage -LiteralPath $qcow -Confirm:$false)

        $result.Count | Should -Be 1
        $result[0].Action | Should -Be 'Optimized' -Because $result[0].Reason
        $result[0].Type | Should -Be 'xfs'
        $result[0].FreeBytes | Should -Be ($extents | Measure-Object -Property Length -Sum).Sum -Because 'the bnobt of every AG, as xfs_db reads it'
        $after = Export-XfsPartition $qcow "$Name-after"
        # Every block xfs_db calls allocated (every file, all metadata, the AGFL) is unchanged; every free block reads zero.
        (Get-FileHash -LiteralPath $after.Raw).Hash | Should -Be (Get-FileHash -LiteralPath $before.Raw).Hash
        $repair = Invoke-XfsRepairCheck $after.Fs
        $repair.Exit | Should -Be 0 -Because $repair.Text
        $check = Get-QemuCheck -Path $qcow
        $check.Corruptions | Should -Be 0
        $check.Leaks | Should -Be 0
        # With 4 KiB clusters every garbage block was a stored cluster of its own: exactly those are given back.
        $storedAfter = Get-QemuDataBytes -Path $qcow
        ($storedBefore - $storedAfter) | Should -Be $garbage
        $result[0].ZeroedBytes | Should -Be $garbage
        Write-Host "    $Name : $garbage bytes of garbage written; stored data $storedBefore -> $storedAfter bytes"
    }

    # Garbage in the free space, then the damage (xfs_db commands), then Optimize-QcowImage must refuse.
    function Assert-RefusedUntouched([string]$Name, [string[]]$Damage, [string]$ReasonPattern) {
        $fs = New-XfsVolume $Name
        Add-Garbage $fs (Get-XfsFreeExtents $fs) | Out-Null
        Edit-XfsVolume $fs $Damage
        $qcow = New-XfsDisk $Name $fs
        $hash = (Get-FileHash -LiteralPath $qcow).Hash
        $result = @(Optimize-QcowImage -LiteralPath $qcow -Confirm:$false -WarningVariable warnings -WarningAction SilentlyContinue)
        $result[0].Action | Should -Be 'Skipped'
        $result[0].Reason | Should -Match $ReasonPattern
        ($warnings -join "`n") | Should -Match 'xfs'
        (Get-FileHash -LiteralPath $qcow).Hash | Should -Be $hash
        $fs
    }
}

Describe 'guest tools prerequisites for XFS' {
    It 'sgdisk, mkfs.xfs, xfs_db and xfs_repair are on PATH' {
        Assert-GuestToolsInIt -Name $GuestTools
    }
}

Describe 'Optimize-QcowImage gives the free blocks of XFS back' -Skip:$SkipGuest {
    BeforeAll {
        Assert-GuestTools -Name $GuestTools
        $dir = New-QcowTestFolder
        $proto = New-XfsProto $dir
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'zeroes exactly the bnobt''s free blocks of a v5 (CRC) file system, keeping every allocated block' {
        Assert-OptimizedXfs 'v5'
    }

    It 'zeroes exactly the bnobt''s free blocks of a v4 file system, keeping every allocated block' {
        Assert-OptimizedXfs 'v4' '-m', 'crc=0'
    }

    It '-WhatIf reports what would be freed and changes nothing' {
        $fs = New-XfsVolume 'whatif'
        $garbage = Add-Garbage $fs (Get-XfsFreeExtents $fs)
        $qcow = New-XfsDisk 'whatif' $fs
        $hash = (Get-FileHash -LiteralPath $qcow).Hash
        $result = @(Optimize-QcowImage -LiteralPath $qcow -WhatIf)
        $result[0].Action | Should -Be 'WouldOptimize'
        $result[0].ZeroedBytes | Should -Be $garbage
        (Get-FileHash -LiteralPath $qcow).Hash | Should -Be $hash
    }

    It 'leaves a file system whose log needs recovery untouched (xfs_repair -n agrees the log is dirty)' {
        $fs = New-XfsVolume 'dirty'
        # mkfs.xfs leaves one record at log block 0: a header, then the unmount operation. Clearing its
        # XLOG_UNMOUNT_TRANS flag makes it an ordinary (CRC-less, as mkfs writes them) record: a dirty log.
        $blockSize = Get-XfsField $fs 'sb 0', 'print blocksize' 'blocksize'
        $agBlocks = Get-XfsField $fs 'sb 0', 'print agblocks' 'agblocks'
        $agBlockLog = Get-XfsField $fs 'sb 0', 'print agblklog' 'agblklog'
        $logStart = Get-XfsField $fs 'sb 0', 'print logstart' 'logstart'
        $log = (($logStart -shr $agBlockLog) * $agBlocks + ($logStart -band ((1L -shl $agBlockLog) - 1))) * $blockSize
        $bytes = Get-FileBytes -Path $fs -Offset $log -Length 1024
        [BitConverter]::ToString($bytes, 0, 4) | Should -Be 'FE-ED-BA-BE'
        ($bytes[512 + 9] -band 0x20) | Should -Be 0x20 -Because 'the record mkfs wrote is an unmount record'
        $stream = [IO.File]::Open($fs, [IO.FileMode]::Open, [IO.FileAccess]::Write)
        try { $stream.Position = $log + 512 + 9; $stream.WriteByte($bytes[512 + 9] -band 0xDF) } finally { $stream.Dispose() }
        $repair = Invoke-XfsRepairCheck $fs
        $repair.Text | Should -Match 'valuable metadata changes in a log'
        $qcow = New-XfsDisk 'dirty' $fs
        $hash = (Get-FileHash -LiteralPath $qcow).Hash
        $result = @(Optimize-QcowImage -LiteralPath $qcow -Confirm:$false -WarningAction SilentlyContinue)
        $result[0].Action | Should -Be 'Skipped'
        $result[0].Reason | Should -Match 'the XFS log needs recovery'
        (Get-FileHash -LiteralPath $qcow).Hash | Should -Be $hash
        (Get-QcowFileSystem -LiteralPath $qcow).NotOptimizableReason | Should -Match 'the XFS log needs recovery'
    }

    It 'refuses a bnobt block whose CRC is wrong, changing nothing' {
        Assert-RefusedUntouched 'badcrc' @('agf 0', 'addr bnoroot', 'crc -i') 'AG 0''s bnobt block \d+ fails its CRC check'
    }

    It 'refuses an AGF whose free count disagrees with its bnobt, changing nothing (xfs_repair -n sees it too)' {
        $fs = Assert-RefusedUntouched 'freeblks' @('agf 1', 'write -d freeblks 7') 'AG 1''s bnobt lists \d+ free blocks but its AGF counts 7'
        (Invoke-XfsRepairCheck $fs).Text | Should -Match 'agf_freeblks 7, counted \d+ in ag 1'
    }

    It 'refuses a bnobt node that points back to itself, promptly' {
        $root = Get-XfsField (New-XfsVolume 'probe') 'agf 0', 'print bnoroot' 'bnoroot'
        $watch = [Diagnostics.Stopwatch]::StartNew()
        Assert-RefusedUntouched 'cycle' @('agf 0', 'addr bnoroot', "write -d ptrs[2] $root") "AG 0's bnobt reaches block $root twice" | Out-Null
        $watch.Elapsed.TotalSeconds | Should -BeLessThan 300 -Because 'a generous bound against a hang, not a speed test'
    }

    It 'refuses a bnobt leaf claiming 65535 records, promptly' {
        $watch = [Diagnostics.Stopwatch]::StartNew()
        Assert-RefusedUntouched 'numrecs' @('agf 0', 'addr bnoroot', 'addr ptrs[1]', 'write -d numrecs 65535') 'claims 65535 records; at most \d+ fit' | Out-Null
        $watch.Elapsed.TotalSeconds | Should -BeLessThan 300 -Because 'a generous bound against a hang, not a speed test'
    }
}
