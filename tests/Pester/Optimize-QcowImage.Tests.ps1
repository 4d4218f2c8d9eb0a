#Requires -Version 7.0
<#
    Pester 5 tests of Optimize-QcowImage: an ext4 file system with deleted files in a GPT partition of a
    qcow2 image. Afterwards every remaining file reads back identical through debugfs, e2fsck -fn and
    qemu-img check are clean, and the stored data shrank; a refused case (journal needing recovery) and
    -WhatIf leave the file byte-identical. An NTFS volume whose free clusters ntfswipe filled with
    garbage must come out byte-identical to the same volume wiped with zeros by ntfswipe (ntfs-3g's
    idea of free, not ours), its files equal through ntfscat, ntfsfix -n clean; a hibernated one is
    left byte-identical. Without the tools the tests are skipped, except with CI=true.
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $GuestTools = @('qemu-img', 'sgdisk', 'mke2fs', 'debugfs', 'e2fsck')
    $SkipGuest = Test-SkipWithoutGuestTools -Name $GuestTools
    $NtfsTools = @('qemu-img', 'sgdisk', 'mkntfs', 'ntfscp', 'ntfscat', 'ntfswipe', 'ntfsfix')
    $SkipNtfs = Test-SkipWithoutGuestTools -Name $NtfsTools
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-QcowPSModule | Out-Null
    $ProgressPreference = 'SilentlyContinue'
    $GuestTools = @('qemu-img', 'sgdisk', 'mke2fs', 'debugfs', 'e2fsck')
    $NtfsTools = @('qemu-img', 'sgdisk', 'mkntfs', 'ntfscp', 'ntfscat', 'ntfswipe', 'ntfsfix')
    $NtfsFiles = [ordered]@{ 'small.txt' = 1; 'page.bin' = 4KB; 'medium.bin' = 700KB; 'large.bin' = 3MB; 'larger.bin' = 5MB + 123 }

    # A qcow2 disk (4 KiB clusters, so every NTFS cluster can be given back alone): GPT, partition 1 at
    # 1 MiB = NTFS holding $NtfsFiles, its free clusters filled with 0xAA by ntfswipe. Returns the image,
    # the garbage volume, and the oracle: that volume after ntfswipe --unused --bytes 0.
    function New-NtfsDisk([string]$Dir, [string]$Name, [hashtable]$Extra = @{}) {
        $fs = Join-Path $Dir "$Name.ntfs"
        Invoke-QemuImg 'create', '-q', '-f', 'raw', $fs, '64M' | Out-Null
        Invoke-GuestTool mkntfs '-q', '-F', '-f', $fs | Out-Null
        $seed = 0
        foreach ($file in $NtfsFiles.GetEnumerator()) {
            $hostFile = Join-Path $Dir "$Name-$($file.Key)"
            [IO.File]::WriteAllBytes($hostFile, (New-RandomBytes -Length $file.Value -Seed (++$seed)))
            Invoke-GuestTool ntfscp '-f', $fs, $hostFile, $file.Key | Out-Null
        }
        Invoke-GuestTool ntfswipe '-q', '--unused', '--bytes', '0xAA', $fs | Out-Null
        foreach ($file in $Extra.GetEnumerator()) {
            $hostFile = Join-Path $Dir "$Name-$($file.Key)"
            [IO.File]::WriteAllBytes($hostFile, $file.Value)
            Invoke-GuestTool ntfscp '-f', $fs, $hostFile, $file.Key | Out-Null
        }
        $wiped = Join-Path $Dir "$Name.wiped.ntfs"
        Copy-Item -LiteralPath $fs -Destination $wiped
        if ($Extra.Count -eq 0) { Invoke-GuestTool ntfswipe '-q', '--unused', '--bytes', '0', $wiped | Out-Null }
        $raw = Join-Path $Dir "$Name.raw"
        Invoke-QemuImg 'create', '-q', '-f', 'raw', $raw, '80M' | Out-Null
        Invoke-GuestTool sgdisk '-n', '1:2048:+64M', '-t', '1:0700', $raw | Out-Null
        Copy-FileRange -Path $fs -Destination $raw -DestinationOffset 1MB
        $qcow = Join-Path $Dir "$Name.qcow2"
        Invoke-QemuImg 'convert', '-O', 'qcow2', '-o', 'cluster_size=4096', $raw, $qcow | Out-Null
        @{ Qcow = $qcow; Garbage = $fs; Wiped = $wiped }
    }

    # Partition 1 of the image as a raw volume, written out of the image by qemu-img.
    function Export-NtfsVolume([string]$Image, [string]$Dir) {
        $raw = Join-Path $Dir 'check.raw'
        $part = Join-Path $Dir 'check.ntfs'
        Remove-Item -LiteralPath $raw, $part -ErrorAction Ignore
        Export-QemuRaw -Path $Image -Destination $raw | Out-Null
        Copy-FileRange -Path $raw -Destination $part -Offset 1MB -Length 64MB
        $part
    }

    # SHA-256 of each file as ntfscat reads it out of an NTFS volume (through sh, so the bytes are not re-encoded).
    function Get-NtfsFileHashes([string]$Volume, [string]$Dir) {
        $hashes = [ordered]@{}
        foreach ($name in $NtfsFiles.Keys) {
            $out = Join-Path $Dir "cat-$name"
            Remove-Item -LiteralPath $out -ErrorAction Ignore
            Invoke-GuestTool sh '-c', 'ntfscat "$1" "$2" > "$3"', 'sh', $Volume, $name, $out | Out-Null
            $hashes[$name] = (Get-FileHash -LiteralPath $out -Algorithm SHA256).Hash
        }
        $hashes
    }

    # A qcow2 disk: GPT, partition 1 = ext4 holding file1..file6 (700 KiB x n), of which file2 and file5 are deleted.
    function New-Ext4Disk([string]$Dir, [string]$Name, [string[]]$DebugfsAfter = @()) {
        $files = Join-Path $Dir "$Name-files"
        New-Item -ItemType Directory -Path $files | Out-Null
        for ($i = 1; $i -le 6; $i++) { [IO.File]::WriteAllBytes((Join-Path $files "file$i.bin"), (New-RandomBytes -Length (700KB * $i) -Seed $i)) }
        $fs = Join-Path $Dir "$Name.ext4"
        Invoke-QemuImg 'create', '-q', '-f', 'raw', $fs, '64M' | Out-Null
        Invoke-GuestTool mke2fs '-q', '-F', '-t', 'ext4', '-b', '4096', '-d', $files, $fs | Out-Null
        foreach ($c in @('rm file2.bin', 'rm file5.bin') + $DebugfsAfter) { Invoke-GuestTool debugfs '-w', '-R', $c, $fs | Out-Null }
        $raw = Join-Path $Dir "$Name.raw"
        Invoke-QemuImg 'create', '-q', '-f', 'raw', $raw, '80M' | Out-Null
        Invoke-GuestTool sgdisk '-n', '1:2048:+64M', '-t', '1:8300', $raw | Out-Null
        Copy-FileRange -Path $fs -Destination $raw -DestinationOffset 1MB
        $qcow = Join-Path $Dir "$Name.qcow2"
        Invoke-QemuImg 'convert', '-O', 'qcow2', $raw, $qcow | Out-Null
        $qcow
    }

    # SHA-256 of each remaining file as debugfs dumps it from partition 1 of the image.
    function Get-GuestFileHashes([string]$Image, [string]$Dir) {
        $raw = Join-Path $Dir 'check.raw'
        $part = Join-Path $Dir 'check.ext4'
        Remove-Item -LiteralPath $raw, $part -ErrorAction Ignore
        Export-QemuRaw -Path $Image -Destination $raw | Out-Null
        Copy-FileRange -Path $raw -Destination $part -Offset 1MB -Length 64MB
        $hashes = [ordered]@{}
        foreach ($n in 1, 3, 4, 6) {
            $out = Join-Path $Dir "dump$n.bin"
            Remove-Item -LiteralPath $out -ErrorAction Ignore
            Invoke-GuestTool debugfs '-R', "dump file$n.bin $out", $part | Out-Null
            $hashes["file$n"] = (Get-FileHash -LiteralPath $out -Algorithm SHA256).Hash
        }
        $hashes['e2fsck'] = Invoke-GuestTool e2fsck '-fn', $part -SuccessCode 0, 1, 4, 8
        $hashes['e2fsckExit'] = $LASTEXITCODE
        $hashes
    }
}

Describe 'guest tools prerequisites' {
    It 'sgdisk, mke2fs, debugfs and e2fsck are on PATH' {
        Assert-GuestToolsInIt -Name $GuestTools
    }
}

Describe 'NTFS prerequisites' {
    It 'sgdisk, mkntfs, ntfscp, ntfscat, ntfswipe and ntfsfix are on PATH' {
        Assert-GuestToolsInIt -Name $NtfsTools
    }
}

Describe 'Optimize-QcowImage gives the free blocks of ext4 back' -Skip:$SkipGuest {
    BeforeAll {
        Assert-GuestTools -Name $GuestTools
        $dir = New-QcowTestFolder
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'zeroes the deleted files'' clusters and keeps every remaining file and the file system intact' {
        $qcow = New-Ext4Disk $dir 'clean'
        $before = Get-GuestFileHashes $qcow $dir
        $storedBefore = Get-QemuDataBytes -Path $qcow
        $result = @(Optimize-QcowImage -LiteralPath $qcow -Confirm:$false)
        $result.Count | Should -Be 1
        $result[0].Action | Should -Be 'Optimized'
        $result[0].Type | Should -Be 'ext4'
        $storedAfter = Get-QemuDataBytes -Path $qcow
        # file2 and file5 held 7 x 700 KiB; all but partial clusters at their ends must be given back.
        ($storedBefore - $storedAfter) | Should -BeGreaterThan (7 * 700KB - 4 * 64KB)
        ($storedBefore - $storedAfter) | Should -Be $result[0].ZeroedBytes
        $after = Get-GuestFileHashes $qcow $dir
        $after['e2fsckExit'] | Should -Be 0 -Because $after['e2fsck']
        foreach ($k in 'file1', 'file3', 'file4', 'file6') { $after[$k] | Should -Be $before[$k] }
        $check = Get-QemuCheck -Path $qcow
        $check.Corruptions | Should -Be 0
        $check.Leaks | Should -Be 0
    }

    It '-WhatIf reports what would be freed and changes nothing' {
        $qcow = New-Ext4Disk $dir 'whatif'
        $hash = (Get-FileHash -LiteralPath $qcow).Hash
        $result = @(Optimize-QcowImage -LiteralPath $qcow -WhatIf)
        $result[0].Action | Should -Be 'WouldOptimize'
        $result[0].ZeroedBytes | Should -BeGreaterThan (7 * 700KB - 4 * 64KB)
        (Get-FileHash -LiteralPath $qcow).Hash | Should -Be $hash
    }

    It 'leaves a file system whose journal needs recovery untouched, byte for byte, with a warning' {
        $qcow = New-Ext4Disk $dir 'dirty' -DebugfsAfter 'feature needs_recovery'
        $hash = (Get-FileHash -LiteralPath $qcow).Hash
        $result = @(Optimize-QcowImage -LiteralPath $qcow -Confirm:$false -WarningVariable warnings -WarningAction SilentlyContinue)
        $result[0].Action | Should -Be 'Skipped'
        $result[0].Reason | Should -Match 'needs recovery'
        ($warnings -join "`n") | Should -Match 'left untouched'
        (Get-FileHash -LiteralPath $qcow).Hash | Should -Be $hash
    }

    It 'refuses a group whose bitmap disagrees with its descriptor counter, changing nothing' {
        $qcow = New-Ext4Disk $dir 'inconsistent' -DebugfsAfter 'set_bg 0 free_blocks_count 7'
        $hash = (Get-FileHash -LiteralPath $qcow).Hash
        $result = @(Optimize-QcowImage -LiteralPath $qcow -Confirm:$false -WarningAction SilentlyContinue)
        $result[0].Action | Should -Be 'Skipped'
        $result[0].Reason | Should -Match 'group 0 has \d+ free blocks'
        (Get-FileHash -LiteralPath $qcow).Hash | Should -Be $hash
    }
}

Describe 'Optimize-QcowImage gives the free clusters of NTFS back' -Skip:$SkipNtfs {
    BeforeAll {
        Assert-GuestTools -Name $NtfsTools
        $dir = New-QcowTestFolder
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'reads back byte-identical to the volume ntfswipe --unused --bytes 0 wiped, every file intact' {
        $disk = New-NtfsDisk $dir 'clean'
        $before = Get-NtfsFileHashes $disk.Garbage $dir
        foreach ($i in 0..($NtfsFiles.Count - 1)) {
            $before[$i] | Should -Be (Get-FileHash -LiteralPath (Join-Path $dir "clean-$(@($NtfsFiles.Keys)[$i])") -Algorithm SHA256).Hash
        }
        $free = (Get-QcowFileSystem -LiteralPath $disk.Qcow).Available
        $storedBefore = Get-QemuDataBytes -Path $disk.Qcow
        $result = @(Optimize-QcowImage -LiteralPath $disk.Qcow -Confirm:$false)
        $result.Count | Should -Be 1
        $result[0].Action | Should -Be 'Optimized'
        $result[0].Type | Should -Be 'ntfs'
        $result[0].FreeBytes | Should -Be $free
        # Every free cluster held 0xAA, so every one of them was stored and is given back.
        $result[0].ZeroedBytes | Should -Be $free
        $free | Should -BeGreaterThan 40MB
        ($storedBefore - (Get-QemuDataBytes -Path $disk.Qcow)) | Should -Be $result[0].ZeroedBytes

        $volume = Export-NtfsVolume $disk.Qcow $dir
        (Get-FileHash -LiteralPath $volume).Hash | Should -Be (Get-FileHash -LiteralPath $disk.Wiped).Hash -Because 'the optimized volume must equal ntfswipe''s zeroing of the same free clusters'
        $after = Get-NtfsFileHashes $volume $dir
        foreach ($name in $NtfsFiles.Keys) { $after[$name] | Should -Be $before[$name] }
        $fix = Invoke-GuestTool ntfsfix '-n', $volume
        $fix | Should -Match 'processed successfully'
        $check = Get-QemuCheck -Path $disk.Qcow
        $check.Corruptions | Should -Be 0
        $check.Leaks | Should -Be 0
    }

    It '-WhatIf reports what would be freed and changes nothing' {
        $disk = New-NtfsDisk $dir 'whatif'
        $hash = (Get-FileHash -LiteralPath $disk.Qcow).Hash
        $result = @(Optimize-QcowImage -LiteralPath $disk.Qcow -WhatIf)
        $result[0].Action | Should -Be 'WouldOptimize'
        $result[0].ZeroedBytes | Should -BeGreaterThan 40MB
        (Get-FileHash -LiteralPath $disk.Qcow).Hash | Should -Be $hash
    }

    It 'leaves a hibernated Windows volume untouched, byte for byte, with a warning' {
        $header = [byte[]]::new(64KB)
        [Text.Encoding]::ASCII.GetBytes('hibr').CopyTo($header, 0)
        $disk = New-NtfsDisk $dir 'hibernated' -Extra @{ 'hiberfil.sys' = $header }
        $hash = (Get-FileHash -LiteralPath $disk.Qcow).Hash
        $fs = @(Get-QcowFileSystem -LiteralPath $disk.Qcow)
        $fs[0].Optimizable | Should -BeFalse
        $fs[0].NotOptimizableReason | Should -Match 'hibernated'
        $result = @(Optimize-QcowImage -LiteralPath $disk.Qcow -Confirm:$false -WarningVariable warnings -WarningAction SilentlyContinue)
        $result[0].Action | Should -Be 'Skipped'
        $result[0].Reason | Should -Match 'hiberfil.sys begins with "hibr"'
        ($warnings -join "`n") | Should -Match 'left untouched'
        (Get-FileHash -LiteralPath $disk.Qcow).Hash | Should -Be $hash
    }
}
