#Requires -Version 7.0
<#
    Pester 5 tests of Get-QcowPartition: partition tables made by sgdisk, sfdisk and parted (GPT and
    MBR, logical partitions, odd alignments, names, attributes, a damaged primary GPT, hostile tables)
    read back equal to what `sfdisk --json` reports for the same raw disk.
    Without the tools the tests are skipped, except on CI ($env:CI -eq 'true'), where they fail.
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $GuestTools = @('qemu-img', 'sgdisk', 'sfdisk', 'parted', 'mke2fs')
    $SkipGuest = Test-SkipWithoutGuestTools -Name $GuestTools
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-QcowPSModule | Out-Null
    $ProgressPreference = 'SilentlyContinue'
    $GuestTools = @('qemu-img', 'sgdisk', 'sfdisk', 'parted', 'mke2fs')

    function Get-SfdiskTable([string]$RawPath) {
        (Invoke-GuestTool sfdisk '--json', $RawPath | ConvertFrom-Json).partitiontable
    }

    # Every partition sfdisk lists must come back with the same start, size, type, GUID and name.
    function Assert-SameAsSfdisk([string]$Image, [string]$RawPath) {
        $expected = Get-SfdiskTable $RawPath
        $format = if ($Image -like '*.raw') { 'Raw' } else { 'Auto' }
        $actual = @(Get-QcowPartition -LiteralPath $Image -Format $format -WarningAction SilentlyContinue)
        $actual.Count | Should -Be @($expected.partitions).Count
        foreach ($e in $expected.partitions) {
            $number = [int]($e.node -replace '^.*?(\d+)$', '$1')
            $p = $actual | Where-Object Number -EQ $number
            $p | Should -Not -BeNullOrEmpty -Because "sfdisk lists partition $number"
            $p.Offset | Should -Be ([long]$e.start * 512)
            $p.Size | Should -Be ([long]$e.size * 512)
            if ($expected.label -eq 'gpt') { $p.TypeId | Should -Be $e.type }
            else { [Convert]::ToInt32($p.TypeId, 16) | Should -Be ([Convert]::ToInt32($e.type, 16)) }
            if ($expected.label -eq 'gpt') {
                $p.Table | Should -Be 'Gpt'
                $p.Guid | Should -Be $e.uuid
                $name = if ($e.PSObject.Properties['name']) { $e.name } else { '' }
                $p.Name | Should -Be $name
            } else {
                $p.Table | Should -Be 'Mbr'
                $p.Bootable | Should -Be ([bool]($e.PSObject.Properties['bootable'] -and $e.bootable))
            }
        }
    }
}

Describe 'guest tools prerequisites' {
    It 'sgdisk, sfdisk, parted and mke2fs are on PATH' {
        Assert-GuestToolsInIt -Name $GuestTools
    }
}

Describe 'Get-QcowPartition reads tables made by the partitioning tools' -Skip:$SkipGuest {
    BeforeAll {
        Assert-GuestTools -Name $GuestTools
        $dir = New-QcowTestFolder
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'a GPT from sgdisk (names, odd alignment, attributes) equals sfdisk --json, in raw and qcow2' {
        $raw = Join-Path $dir 'sgdisk.raw'
        Invoke-QemuImg 'create', '-q', '-f', 'raw', $raw, '200M' | Out-Null
        Invoke-GuestTool sgdisk '-a', '1', '-n', '1:34:+1M', '-t', '1:ef02', '-c', '1:bios grub',
            '-n', '2:2083:+33M', '-t', '2:ef00', '-c', '2:EFI system partition',
            '-n', '3:0:+50M', '-t', '3:8e00', '-c', '3:vg0 ünïcode',
            '-n', '4:0:0', '-t', '4:0700', '-c', '4:data', '-A', '4:set:2', '-A', '4:set:0', '-A', '4:set:60', $raw | Out-Null
        $qcow = Join-Path $dir 'sgdisk.qcow2'
        Invoke-QemuImg 'convert', '-O', 'qcow2', $raw, $qcow | Out-Null
        Assert-SameAsSfdisk -Image $raw -RawPath $raw
        Assert-SameAsSfdisk -Image $qcow -RawPath $raw

        $parts = Get-QcowPartition -LiteralPath $qcow
        ($parts | Where-Object Number -EQ 1).Type | Should -Be 'BIOS boot'
        ($parts | Where-Object Number -EQ 2).Type | Should -Be 'EFI System'
        ($parts | Where-Object Number -EQ 3).Type | Should -Be 'Linux LVM'
        $data = $parts | Where-Object Number -EQ 4
        $data.Type | Should -Be 'Microsoft basic data'
        $data.Attributes | Should -Be (([ulong]1 -shl 60) + 5)
        $sfdiskAttrs = ((Get-SfdiskTable $raw).partitions | Where-Object node -Match '4$').attrs
        $sfdiskAttrs | Should -Match 'RequiredPartition'
        $sfdiskAttrs | Should -Match 'LegacyBIOSBootable'
        $sfdiskAttrs | Should -Match 'GUID:60'
        $data.Bootable | Should -BeTrue
        # The last partition ends where the backup entry array begins (33 sectors before the end).
        $data.Offset + $data.Size | Should -Be (200MB - 33 * 512)
    }

    It 'an MBR from sfdisk with an extended partition and logical partitions equals sfdisk --json' {
        $raw = Join-Path $dir 'sfdisk.raw'
        Invoke-QemuImg 'create', '-q', '-f', 'raw', $raw, '120M' | Out-Null
        $script = "label: dos`nstart=63, size=20000, type=83, bootable`nsize=30M, type=82`nsize=80M, type=5`nsize=20M, type=83`nsize=10001, type=7`ntype=8e`n"
        Invoke-GuestTool sfdisk '--no-reread', '--no-tell-kernel', $raw -InputText $script | Out-Null
        $qcow = Join-Path $dir 'sfdisk.qcow2'
        Invoke-QemuImg 'convert', '-O', 'qcow2', $raw, $qcow | Out-Null
        Assert-SameAsSfdisk -Image $qcow -RawPath $raw
        $parts = Get-QcowPartition -LiteralPath $qcow
        ($parts | Where-Object Kind -EQ 'Logical').Number | Should -Be @(5, 6, 7)
        ($parts | Where-Object Number -EQ 3).Type | Should -Be 'Extended'
        ($parts | Where-Object Number -EQ 2).Type | Should -Be 'Linux swap / Solaris'
    }

    It 'tables from parted (msdos with a boot flag, and gpt with names) equal sfdisk --json' {
        foreach ($label in 'msdos', 'gpt') {
            $raw = Join-Path $dir "parted-$label.raw"
            Invoke-QemuImg 'create', '-q', '-f', 'raw', $raw, '300M' | Out-Null
            Invoke-GuestTool parted '-s', $raw, 'mklabel', $label, 'mkpart', 'primary', 'ext4', '1MiB', '101MiB',
                'mkpart', 'primary', 'fat32', '101MiB', '150MiB', 'set', '1', 'boot', 'on' | Out-Null
            Assert-SameAsSfdisk -Image $raw -RawPath $raw
        }
    }

    It 'a damaged primary GPT falls back to the backup, with a warning' {
        $raw = Join-Path $dir 'damaged.raw'
        Invoke-QemuImg 'create', '-q', '-f', 'raw', $raw, '64M' | Out-Null
        Invoke-GuestTool sgdisk '-n', '1:2048:+10M', '-c', '1:first', '-n', '2:0:0', '-c', '2:second', $raw | Out-Null
        $before = Get-QcowPartition -LiteralPath $raw -Format Raw
        # Break one byte of the primary header's disk GUID: its CRC no longer matches.
        $bytes = Get-FileBytes -Path $raw -Offset 512 -Length 512
        $bytes[56] = $bytes[56] -bxor 0xFF
        $stream = [IO.File]::OpenWrite($raw); $stream.Position = 512; $stream.Write($bytes, 0, 512); $stream.Dispose()
        $after = Get-QcowPartition -LiteralPath $raw -Format Raw -WarningVariable warnings -WarningAction SilentlyContinue
        ($warnings -join "`n") | Should -Match 'primary GPT is damaged.*backup'
        $after.Count | Should -Be 2
        for ($i = 0; $i -lt 2; $i++) {
            $after[$i].Offset | Should -Be $before[$i].Offset
            $after[$i].Size | Should -Be $before[$i].Size
            $after[$i].Guid | Should -Be $before[$i].Guid
            $after[$i].Name | Should -Be $before[$i].Name
        }
        # sgdisk agrees the primary is the damaged copy.
        (Invoke-GuestTool sgdisk '-v', $raw -SuccessCode 0, 1, 2) | Should -Match 'main GPT header|primary'
    }

    It 'a GPT with both copies damaged is reported, with no partitions, and never crashes' {
        $raw = Join-Path $dir 'both.raw'
        Invoke-QemuImg 'create', '-q', '-f', 'raw', $raw, '16M' | Out-Null
        Invoke-GuestTool sgdisk '-n', '1:0:0', $raw | Out-Null
        foreach ($offset in @((512 + 16), (16MB - 512 + 16))) {
            $stream = [IO.File]::OpenWrite($raw); $stream.Position = $offset; $stream.WriteByte(0x5A); $stream.Dispose()
        }
        $parts = @(Get-QcowPartition -LiteralPath $raw -Format Raw -WarningVariable warnings -WarningAction SilentlyContinue)
        $parts.Count | Should -Be 0
        ($warnings -join "`n") | Should -Match 'Neither GPT copy is valid'
    }

    It 'a hostile extended boot record chain that loops ends with a warning' {
        $raw = Join-Path $dir 'loop.raw'
        Invoke-QemuImg 'create', '-q', '-f', 'raw', $raw, '8M' | Out-Null
        $disk = [byte[]]::new(8MB)
        function Set-Entry([int]$sector, [int]$slot, [byte]$type, [uint32]$start, [uint32]$count) {
            $o = $sector * 512 + 446 + 16 * $slot
            $disk[$o + 4] = $type
            [BitConverter]::GetBytes($start).CopyTo($disk, $o + 8)
            [BitConverter]::GetBytes($count).CopyTo($disk, $o + 12)
            $disk[$sector * 512 + 510] = 0x55; $disk[$sector * 512 + 511] = 0xAA
        }
        Set-Entry 0 0 0x05 2048 8192          # extended partition at sector 2048
        Set-Entry 2048 0 0x83 64 100          # logical 5
        Set-Entry 2048 1 0x05 1000 2000       # next EBR at 2048+1000
        Set-Entry 3048 0 0x83 64 100          # logical 6
        Set-Entry 3048 1 0x05 1000 2000       # next EBR: 2048+1000 again, itself — a loop
        [IO.File]::WriteAllBytes($raw, $disk)
        $parts = @(Get-QcowPartition -LiteralPath $raw -Format Raw -WarningVariable warnings -WarningAction SilentlyContinue)
        ($parts | Where-Object Kind -EQ 'Logical').Number | Should -Be @(5, 6)
        ($warnings -join "`n") | Should -Match 'loop'
    }

    It 'a disk with no table has no partitions; a file system on the whole disk is not taken for an MBR' {
        $raw = Join-Path $dir 'whole.raw'
        Invoke-QemuImg 'create', '-q', '-f', 'raw', $raw, '32M' | Out-Null
        @(Get-QcowPartition -LiteralPath $raw -Format Raw -WarningAction SilentlyContinue).Count | Should -Be 0
        Invoke-GuestTool mke2fs '-q', '-F', '-t', 'ext4', $raw | Out-Null
        @(Get-QcowPartition -LiteralPath $raw -Format Raw -WarningAction SilentlyContinue).Count | Should -Be 0
    }

    It 'reads the table of an internal snapshot with -Snapshot, and takes paths from the pipeline' {
        $raw = Join-Path $dir 'snap.raw'
        Invoke-QemuImg 'create', '-q', '-f', 'raw', $raw, '32M' | Out-Null
        Invoke-GuestTool sgdisk '-n', '1:0:+8M', $raw | Out-Null
        $qcow = Join-Path $dir 'snap.qcow2'
        Invoke-QemuImg 'convert', '-O', 'qcow2', $raw, $qcow | Out-Null
        Invoke-QemuImg 'snapshot', '-c', 'one', $qcow | Out-Null
        # After the snapshot both GPT copies are wiped: the snapshot still has the table.
        Invoke-QemuIo $qcow 'write -z 0 1M', 'write -z 31M 1M'
        @(Get-QcowPartition -LiteralPath $qcow -WarningAction SilentlyContinue).Count | Should -Be 0
        @(Get-QcowPartition -LiteralPath $qcow -Snapshot one).Count | Should -Be 1
        @(Get-Item -LiteralPath $qcow | Get-QcowPartition -Snapshot one).Count | Should -Be 1
    }

    It 'fits 120 columns' {
        $raw = Join-Path $dir 'sgdisk.raw'
        $stats = Get-TextLineStats -Text (Get-QcowPartition -LiteralPath $raw -Format Raw | Format-Table | Out-String -Width 120)
        $stats.MaxLength | Should -BeLessOrEqual 120
        $stats.Lines -join "`n" | Should -Match 'Microsoft basic data'
    }
}
