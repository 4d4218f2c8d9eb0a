#Requires -Version 7.0
<#
    Pester 5 tests of Get-QcowFileSystem: file systems made by mke2fs, mkfs.fat, mkfs.xfs, mkfs.ntfs and
    mkswap, filled with real files (mke2fs -d, mcopy, an mkfs.xfs protofile, ntfscp), in the partitions
    of a GPT disk. Type, label and UUID must equal blkid's; usage must equal what each file system's own
    tool reports (dumpe2fs -h, fsck.fat -v -n, xfs_db, ntfsinfo -m). Without the tools the tests are skipped, except on CI ($env:CI -eq 'true'), where they fail.
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $GuestTools = @('qemu-img', 'sgdisk', 'blkid', 'mke2fs', 'dumpe2fs', 'mkfs.fat', 'fsck.fat', 'mcopy', 'mkfs.xfs', 'xfs_db', 'mkfs.ntfs', 'ntfscp', 'ntfsinfo', 'mkswap')
    $SkipGuest = Test-SkipWithoutGuestTools -Name $GuestTools
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-QcowPSModule | Out-Null
    $ProgressPreference = 'SilentlyContinue'
    $GuestTools = @('qemu-img', 'sgdisk', 'blkid', 'mke2fs', 'dumpe2fs', 'mkfs.fat', 'fsck.fat', 'mcopy', 'mkfs.xfs', 'xfs_db', 'mkfs.ntfs', 'ntfscp', 'ntfsinfo', 'mkswap')

    # blkid's view of the volume at a byte offset of a raw disk: TYPE, LABEL, UUID.
    function Get-Blkid([string]$Raw, [long]$Offset) {
        $values = @{}
        foreach ($line in (Invoke-GuestTool blkid '-p', '-O', "$Offset", '-o', 'export', $Raw -SuccessCode 0, 2) -split "`n") {
            if ($line -match '^(\w+)=(.*)$') { $values[$Matches[1]] = $Matches[2] }
        }
        $values
    }
}

Describe 'guest tools prerequisites' {
    It 'the file-system tools are on PATH' {
        Assert-GuestToolsInIt -Name $GuestTools
    }
}

Describe 'Get-QcowFileSystem on a GPT disk with ext4, FAT, XFS, NTFS and swap' -Skip:$SkipGuest {
    BeforeAll {
        Assert-GuestTools -Name $GuestTools
        $dir = New-QcowTestFolder
        $files = Join-Path $dir 'files'
        New-Item -ItemType Directory -Path $files | Out-Null
        for ($i = 1; $i -le 6; $i++) { [IO.File]::WriteAllBytes((Join-Path $files "file$i.bin"), (New-RandomBytes -Length (700KB * $i) -Seed $i)) }

        $raw = Join-Path $dir 'disk.raw'
        Invoke-QemuImg 'create', '-q', '-f', 'raw', $raw, '700M' | Out-Null
        Invoke-GuestTool sgdisk '-n', '1:0:+64M', '-t', '1:8300', '-n', '2:0:+64M', '-t', '2:ef00', '-n', '3:0:+320M', '-t', '3:8300',
            '-n', '4:0:+64M', '-t', '4:0700', '-n', '5:0:+16M', '-t', '5:8200', '-n', '6:0:+8M', $raw | Out-Null
        $parts = Get-QcowPartition -LiteralPath $raw -Format Raw
        $volumes = @{}
        foreach ($p in $parts) { $volumes[$p.Number] = $p }

        $ext4 = Join-Path $dir 'ext4.img'
        Invoke-QemuImg 'create', '-q', '-f', 'raw', $ext4, '64M' | Out-Null
        Invoke-GuestTool mke2fs '-q', '-F', '-t', 'ext4', '-b', '4096', '-L', 'rootfs', '-d', $files, $ext4 | Out-Null
        $fat = Join-Path $dir 'fat.img'
        Invoke-QemuImg 'create', '-q', '-f', 'raw', $fat, '64M' | Out-Null
        Invoke-GuestTool mkfs.fat '-F', '16', '-n', 'EFIBOOT', $fat | Out-Null
        Invoke-GuestTool mcopy '-i', $fat, (Join-Path $files 'file3.bin'), (Join-Path $files 'file5.bin'), '::/' | Out-Null
        $xfs = Join-Path $dir 'xfs.img'
        Invoke-QemuImg 'create', '-q', '-f', 'raw', $xfs, '320M' | Out-Null
        # An mkfs.xfs protofile: the root directory with file1..file4 copied in, no mount needed.
        $proto = Join-Path $dir 'xfs.proto'
        $lines = @('boot', '0 0', 'd--755 0 0') + (1..4 | ForEach-Object { "file$_.bin ---644 0 0 $(Join-Path $files "file$_.bin")" }) + '$'
        Set-Content -LiteralPath $proto -Value $lines
        Invoke-GuestTool mkfs.xfs '-q', '-f', '-L', 'data', '-p', $proto, $xfs | Out-Null
        $ntfs = Join-Path $dir 'ntfs.img'
        Invoke-QemuImg 'create', '-q', '-f', 'raw', $ntfs, '64M' | Out-Null
        Invoke-GuestTool mkfs.ntfs '-q', '-F', '-f', '-L', 'Windows', $ntfs | Out-Null
        foreach ($n in 2, 6) { Invoke-GuestTool ntfscp '-f', $ntfs, (Join-Path $files "file$n.bin"), "file$n.bin" | Out-Null }
        $swap = Join-Path $dir 'swap.img'
        Invoke-QemuImg 'create', '-q', '-f', 'raw', $swap, '16M' | Out-Null
        Invoke-GuestTool mkswap '-L', 'swappy', $swap | Out-Null
        $number = 1
        foreach ($img in $ext4, $fat, $xfs, $ntfs, $swap) { Copy-FileRange -Path $img -Destination $raw -DestinationOffset $volumes[$number++].Offset }

        $qcow = Join-Path $dir 'disk.qcow2'
        Invoke-QemuImg 'convert', '-O', 'qcow2', $raw, $qcow | Out-Null
        $found = @(Get-QcowFileSystem -LiteralPath $qcow)
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'finds one file system per formatted partition, and none in the empty one' {
        $found.Partition | Should -Be @(1, 2, 3, 4, 5)
        (Get-QcowPartition -LiteralPath $qcow).FileSystem | Should -Be @('ext4', 'vfat', 'xfs', 'ntfs', 'swap', $null)
    }

    It 'names type, label and UUID as blkid does' {
        foreach ($fs in $found) {
            $blkid = Get-Blkid $raw $volumes[$fs.Partition].Offset
            $fs.Type | Should -Be $blkid.TYPE -Because "partition $($fs.Partition)"
            $fs.Uuid | Should -Be $blkid.UUID -Because "partition $($fs.Partition)"
            # blkid prints no LABEL for a volume without one: then there is none to report.
            if ($blkid.ContainsKey('LABEL')) { $fs.Label | Should -Be $blkid.LABEL -Because "partition $($fs.Partition)" }
            else { $fs.Label | Should -BeNullOrEmpty -Because "blkid finds no label on partition $($fs.Partition)" }
        }
        @($found | Where-Object Label).Count | Should -BeGreaterThan 0 -Because 'the premise: some volumes have labels'
    }

    It 'ext4 usage equals dumpe2fs -h' {
        $header = Invoke-GuestTool dumpe2fs '-h', $ext4
        function Field([string]$name) { [long]([regex]::Match($header, "(?m)^$([regex]::Escape($name)):\s+(\d+)").Groups[1].Value) }
        $bs = Field 'Block size'
        $fs = $found | Where-Object Partition -EQ 1
        $fs.BlockSize | Should -Be $bs
        $fs.Size | Should -Be ((Field 'Block count') * $bs)
        $fs.Used | Should -Be (((Field 'Block count') - (Field 'Free blocks')) * $bs)
        $fs.Available | Should -Be (((Field 'Free blocks') - (Field 'Reserved block count')) * $bs)
        $fs.Used | Should -BeGreaterThan (21 * 700KB) -Because 'the six files hold 21 x 700 KiB'
        $fs.Optimizable | Should -BeTrue
    }

    It 'FAT usage equals fsck.fat -v -n' {
        $report = Invoke-GuestTool fsck.fat '-v', '-n', $fat
        $m = [regex]::Match($report, '(\d+)/(\d+) clusters')
        $clusterBytes = [long]([regex]::Match($report, '(\d+) bytes per cluster').Groups[1].Value)
        $fs = $found | Where-Object Partition -EQ 2
        $fs.BlockSize | Should -Be $clusterBytes
        $fs.Size | Should -Be ([long]$m.Groups[2].Value * $clusterBytes)
        $fs.Used | Should -Be ([long]$m.Groups[1].Value * $clusterBytes)
        $fs.Available | Should -Be ($fs.Size - $fs.Used)
        $fs.Optimizable | Should -BeTrue
    }

    It 'XFS usage equals the counters xfs_db prints, and a cleanly made XFS is reported as optimizable' {
        $sb = Invoke-GuestTool xfs_db '-r', '-c', 'sb 0', '-c', 'print blocksize dblocks fdblocks', $xfs
        function Field([string]$name) { [long]([regex]::Match($sb, "(?m)^$name = (\d+)").Groups[1].Value) }
        $fs = $found | Where-Object Partition -EQ 3
        $fs.BlockSize | Should -Be (Field 'blocksize')
        $fs.Size | Should -Be ((Field 'dblocks') * (Field 'blocksize'))
        $fs.Available | Should -Be ((Field 'fdblocks') * (Field 'blocksize'))
        # The superblock's counter agrees with the free-space B+trees (xfs_db freesp walks the bnobt), and files are there.
        $freesp = Invoke-GuestTool xfs_db '-r', '-c', 'freesp -s', $xfs
        [long]([regex]::Match($freesp, 'total free blocks (\d+)').Groups[1].Value) | Should -Be (Field 'fdblocks')
        $fs.Used | Should -BeGreaterThan ((700KB * 10) + 10MB) -Because 'file1..file4 (7000 KiB) and the internal log are in use'
        $fs.Optimizable | Should -BeTrue -Because $fs.NotOptimizableReason
        $fs.NotOptimizableReason | Should -BeNullOrEmpty
    }

    It 'NTFS usage and label equal ntfsinfo -m ($Bitmap), and NTFS is reported as not optimizable' {
        $info = Invoke-GuestTool ntfsinfo '-m', $ntfs
        function Field([string]$name) { [long]([regex]::Match($info, "(?m)^\s*$($name):\s*(\d+)").Groups[1].Value) }
        $ntfsFs = $found | Where-Object Partition -EQ 4
        $cluster = Field 'Cluster Size'
        $ntfsFs.BlockSize | Should -Be $cluster
        $ntfsFs.Size | Should -Be ((Field 'Volume Size in Clusters') * $cluster)
        $ntfsFs.Available | Should -Be ((Field 'Free Clusters') * $cluster)
        $ntfsFs.Used + $ntfsFs.Available | Should -Be $ntfsFs.Size
        $ntfsFs.Used | Should -BeGreaterThan (700KB * 8) -Because 'file2 and file6 (5600 KiB) were copied in'
        $ntfsFs.Label | Should -Be ([regex]::Match($info, '(?m)^\s*Volume Name: (.*)$').Groups[1].Value.Trim())
        $ntfsFs.Optimizable | Should -BeFalse
    }

    It 'swap is identified with usage left empty rather than guessed' {
        $swapFs = $found | Where-Object Partition -EQ 5
        $swapFs.Size | Should -BeNullOrEmpty
        $swapFs.Label | Should -Be 'swappy'
    }

    It 'works from the pipeline over several images and filters on UsePercent' {
        $copy = Join-Path $dir 'copy.qcow2'
        Copy-Item -LiteralPath $qcow -Destination $copy
        $all = @(Get-ChildItem -LiteralPath $dir -Filter '*.qcow2' | Get-QcowFileSystem)
        $all.Count | Should -Be 10
        $full = @(Get-ChildItem -LiteralPath $dir -Filter '*.qcow2' | Get-QcowFileSystem | Where-Object UsePercent -GT 20)
        $full.Type | Sort-Object -Unique | Should -Contain 'ext4'
        Remove-Item -LiteralPath $copy
    }

    It 'finds a file system on a disk with no partition table as partition 0' {
        $whole = @(Get-QcowFileSystem -LiteralPath $ext4 -Format Raw)
        $whole.Count | Should -Be 1
        $whole[0].Partition | Should -Be 0
        $whole[0].Label | Should -Be 'rootfs'
    }

    It 'fits 120 columns' {
        $stats = Get-TextLineStats -Text ($found | Format-Table | Out-String -Width 120)
        $stats.MaxLength | Should -BeLessOrEqual 120
        $stats.Lines -join "`n" | Should -Match 'rootfs'
    }
}
