#Requires -Version 7.0
<#
    Pester 5 tests of Optimize-QcowImage: an ext4 file system with deleted files in a GPT partition of a
    qcow2 image. Afterwards every remaining file reads back identical through debugfs, e2fsck -fn and
    qemu-img check are clean, and the stored data shrank; a refused case (journal needing recovery) and
    -WhatIf leave the file byte-identical. Without the tools the tests are skipped, except with CI=true.
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $GuestTools = @('qemu-img', 'sgdisk', 'mke2fs', 'debugfs', 'e2fsck')
    $SkipGuest = Test-SkipWithoutGuestTools -Name $GuestTools
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-QcowPSModule | Out-Null
    $ProgressPreference = 'SilentlyContinue'
    $GuestTools = @('qemu-img', 'sgdisk', 'mke2fs', 'debugfs', 'e2fsck')

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
