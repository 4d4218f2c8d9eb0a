#Requires -Version 7.0
<#
    Pester 5 tests of New-QcowPartitionTable: the tables it writes pass `sgdisk -v` and read back equal
    in `sfdisk --json` and `parted` on raw disks up to a few TiB; an MBR with logical partitions is the
    file sfdisk writes for the same request, but for the random disk identifier; on 1 EiB and 2 EiB qcow2 images (the
    largest qcow2 with 2 MiB clusters) they are checked through qemu-nbd + `nbdkit --filter=partition`
    and by reading the backup header and array from the last sectors with qemu-io (CRCs computed here).
    Refusal without -Force, -Force, -WhatIf and bad partitions are checked to leave the file as it was.
    Without the tools the tests are skipped, except on CI ($env:CI -eq 'true'), where they fail.
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $GuestTools = @('qemu-img', 'qemu-io', 'qemu-nbd', 'nbdkit', 'nbdinfo', 'sgdisk', 'sfdisk', 'fdisk', 'parted', 'mke2fs', 'cmp')
    $SkipGuest = Test-SkipWithoutGuestTools -Name $GuestTools
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-QcowPSModule | Out-Null
    $ProgressPreference = 'SilentlyContinue'
    $GuestTools = @('qemu-img', 'qemu-io', 'qemu-nbd', 'nbdkit', 'nbdinfo', 'sgdisk', 'sfdisk', 'fdisk', 'parted', 'mke2fs', 'cmp')
    $LinuxFilesystem = '0FC63DAF-8483-4772-8E79-3D69D8477DE4'

    function New-RawDisk([string]$Dir, [string]$Name, [string]$Size) {
        $raw = Join-Path $Dir $Name
        Remove-Item -LiteralPath $raw -ErrorAction Ignore
        Invoke-QemuImg 'create', '-q', '-f', 'raw', $raw, $Size | Out-Null
        $raw
    }

    function Get-SfdiskTable([string]$RawPath) {
        # stdout only: sfdisk warns on stderr about a 2 TiB disk with a DOS label.
        $json = & sfdisk --json $RawPath 2>$null
        $LASTEXITCODE | Should -Be 0 -Because "sfdisk --json $RawPath succeeds"
        ($json | Out-String | ConvertFrom-Json).partitiontable
    }

    # What a refused command must leave as it was: the stored data and the first and last 64 KiB.
    function Get-DiskFingerprint([string]$RawPath) {
        $length = (Get-Item -LiteralPath $RawPath).Length
        '{0}|{1}|{2}' -f (Get-QemuDataBytes -Path $RawPath),
            (Get-BytesHash (Get-FileBytes -Path $RawPath -Offset 0 -Length 64KB)),
            (Get-BytesHash (Get-FileBytes -Path $RawPath -Offset ($length - 64KB) -Length 64KB))
    }

    # sgdisk -v must find nothing wrong (it exits 0 and says so).
    function Assert-SgdiskClean([string]$RawPath) {
        Invoke-GuestTool sgdisk '-v', $RawPath | Should -Match 'No problems found'
    }

    # Each partition we emitted is what sfdisk and parted list: same start, size, type, GUID and name.
    function Assert-ToolsAgree([string]$RawPath, [object[]]$Partitions, [string]$Label) {
        $sf = Get-SfdiskTable $RawPath
        $sf.label | Should -Be $Label
        @($sf.partitions).Count | Should -Be $Partitions.Count
        $parted = (Invoke-GuestTool parted '-s', '-m', $RawPath, 'unit', 'B', 'print') -split "`n" | Where-Object { $_ -match '^\d+:' }
        @($parted).Count | Should -Be $Partitions.Count
        foreach ($p in $Partitions) {
            $e = $sf.partitions | Where-Object node -Match "\D$($p.Number)$"
            [long]$e.start * 512 | Should -Be $p.Offset
            [long]$e.size * 512 | Should -Be $p.Size
            if ($Label -eq 'gpt') {
                $e.type | Should -Be $p.TypeId
                $e.uuid | Should -Be $p.Guid
                $name = if ($e.PSObject.Properties['name']) { $e.name } else { '' }
                $name | Should -Be $p.Name
            } else {
                [Convert]::ToInt32($e.type, 16) | Should -Be ([Convert]::ToInt32($p.TypeId, 16))
            }
            $fields = ($parted | Where-Object { $_ -match "^$($p.Number):" }) -split ':'
            $fields[1] | Should -Be "$($p.Offset)B"
            $fields[3] | Should -Be "$($p.Size)B"
        }
    }

    # CRC-32 (IEEE, reflected) written out here, independent of the engine's, to check what we wrote.
    $script:CrcTable = [uint32[]]::new(256)
    for ($n = 0; $n -lt 256; $n++) {
        [uint32]$c = $n
        for ($k = 0; $k -lt 8; $k++) { $c = if ($c -band 1) { ($c -shr 1) -bxor [uint32]3988292384 } else { $c -shr 1 } }
        $script:CrcTable[$n] = $c
    }
    function Get-Crc32([byte[]]$Bytes, [int]$Offset, [int]$Count) {
        [uint32]$crc = [uint32]::MaxValue
        for ($i = $Offset; $i -lt $Offset + $Count; $i++) {
            $crc = $script:CrcTable[($crc -bxor $Bytes[$i]) -band 0xFF] -bxor ($crc -shr 8)
        }
        [uint32]($crc -bxor [uint32]::MaxValue)
    }

    # Bytes of a qcow2 image's guest disk, read by qemu-io (read -v prints a hex dump).
    function Read-QemuBytes([string]$Image, [long]$Offset, [int]$Length) {
        $dump = Invoke-GuestTool qemu-io '-r', '-f', 'qcow2', '-c', "read -v $Offset $Length", $Image
        $bytes = [Collections.Generic.List[byte]]::new()
        foreach ($line in $dump -split "`n") {
            if ($line -match '^[0-9a-f]+:\s+((?:[0-9a-f]{2} ){1,16})') {
                foreach ($h in ($Matches[1].Trim() -split ' ')) { $bytes.Add([Convert]::ToByte($h, 16)) }
            }
        }
        $bytes.Count | Should -Be $Length -Because 'qemu-io dumps every byte read'
        , $bytes.ToArray()
    }

    # The GPT header at the given sector of the image, with its CRCs checked here.
    function Read-GptHeader([string]$Image, [long]$Lba) {
        $s = Read-QemuBytes $Image ($Lba * 512) 512
        $copy = [byte[]]$s.Clone()
        [Array]::Clear($copy, 16, 4)
        $h = [ordered]@{
            Signature   = [Text.Encoding]::ASCII.GetString($s, 0, 8)
            HeaderCrcOk = [BitConverter]::ToUInt32($s, 16) -eq (Get-Crc32 $copy 0 ([BitConverter]::ToUInt32($s, 12)))
            MyLba       = [BitConverter]::ToInt64($s, 24)
            AlternateLba = [BitConverter]::ToInt64($s, 32)
            FirstUsable = [BitConverter]::ToInt64($s, 40)
            LastUsable  = [BitConverter]::ToInt64($s, 48)
            EntriesLba  = [BitConverter]::ToInt64($s, 72)
            EntryCount  = [BitConverter]::ToUInt32($s, 80)
            EntrySize   = [BitConverter]::ToUInt32($s, 84)
        }
        $entries = Read-QemuBytes $Image ($h.EntriesLba * 512) ($h.EntryCount * $h.EntrySize)
        $h.EntriesCrcOk = [BitConverter]::ToUInt32($s, 88) -eq (Get-Crc32 $entries 0 $entries.Length)
        [pscustomobject]$h
    }

    # Exports the image read-only with qemu-nbd on a Unix socket in Dir, runs Body with the socket path, always stops it.
    function Invoke-WithQemuNbd([string]$Image, [string]$Dir, [scriptblock]$Body) {
        $socket = Join-Path $Dir 'qemu-nbd.sock'
        Remove-Item -LiteralPath $socket -ErrorAction Ignore
        $process = Start-Process -FilePath (Get-Command qemu-nbd -CommandType Application)[0].Source -PassThru `
            -ArgumentList '-r', '-t', '-f', 'qcow2', "--socket=$socket", $Image `
            -RedirectStandardError (Join-Path $Dir 'qemu-nbd.err') -RedirectStandardOutput (Join-Path $Dir 'qemu-nbd.out')
        try {
            Wait-UnixSocketListening -Socket $socket -Process $process -Tool 'qemu-nbd' -StandardError { Get-Content -Raw (Join-Path $Dir 'qemu-nbd.err') }
            & $Body $socket
        } finally {
            if (-not $process.HasExited) { $process.Kill() }
            $process.WaitForExit(10000) | Out-Null
        }
    }

    # The size nbdkit's partition filter finds for partition N of the export behind the socket.
    function Get-NbdkitPartitionSize([string]$Socket, [int]$Number) {
        $out = Invoke-GuestTool timeout '60', 'nbdkit', '-U', '-', '--filter=partition', 'nbd', "socket=$Socket", "partition=$Number",
            '--run', 'nbdinfo --size "$uri"'
        [long]($out.Trim() -split "`n")[-1]
    }
}

Describe 'guest tools prerequisites' {
    It 'qemu-nbd, nbdkit, nbdinfo, sgdisk, sfdisk, fdisk, parted, mke2fs and cmp are on PATH' {
        Assert-GuestToolsInIt -Name $GuestTools
    }
}

Describe 'New-QcowPartitionTable writes tables the partitioning tools accept' -Skip:$SkipGuest {
    BeforeAll {
        Assert-GuestTools -Name $GuestTools
        $dir = New-QcowTestFolder
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'by default one GPT partition over a 3 TiB disk, from 1 MiB to the last whole MiB before the backup table' {
        $raw = New-RawDisk $dir 'default.raw' '3T'
        $p = @(New-QcowPartitionTable -LiteralPath $raw -Format Raw)
        $p.Count | Should -Be 1
        $p[0].Table | Should -Be 'Gpt'
        $p[0].Number | Should -Be 1
        $p[0].TypeId | Should -Be $LinuxFilesystem
        $p[0].Offset | Should -Be 1MB
        $p[0].Size | Should -Be (3TB - 2MB)
        Assert-SgdiskClean $raw
        Assert-ToolsAgree $raw $p 'gpt'
        $sf = Get-SfdiskTable $raw
        $sf.firstlba | Should -Be 34
        $sf.lastlba | Should -Be (3TB / 512 - 34)
    }

    It 'the partitions given (sizes as numbers and strings, types by name and GUID, names) on a 4 TiB disk' {
        $raw = New-RawDisk $dir 'given.raw' '4T'
        $p = @(New-QcowPartitionTable -LiteralPath $raw -Format Raw -Partition @(
                @{ Size = '512M'; Type = 'EFI System'; Name = 'esp' },
                @{ Size = 1GB + 512; Type = '0657FD6D-A4AB-43C4-84E5-0933C84B4F4F'; Name = 'swap' },
                @{ Size = 2TB; Type = 'Linux LVM' },
                @{ Name = 'rest ünïcode' }))
        $p.Count | Should -Be 4
        $p.Type | Should -Be @('EFI System', 'Linux swap', 'Linux LVM', 'Linux filesystem')
        $p.Name | Should -Be @('esp', 'swap', '', 'rest ünïcode')
        $p.Offset | ForEach-Object { $_ % 1MB | Should -Be 0 }
        $p[1].Size | Should -Be (1GB + 512)
        $p[2].Offset | Should -Be (1MB + 512MB + 1GB + 1MB) -Because 'a partition starts on the next 1 MiB boundary'
        ($p.Guid | Select-Object -Unique).Count | Should -Be 4
        Assert-SgdiskClean $raw
        Assert-ToolsAgree $raw $p 'gpt'
        # What Get-QcowPartition reads is what was emitted.
        $read = @(Get-QcowPartition -LiteralPath $raw -Format Raw)
        $read.Guid | Should -Be $p.Guid
    }

    It 'an MBR with one partition over a 2 TiB disk (the most an MBR addresses) and with the partitions given' {
        $raw = New-RawDisk $dir 'mbr.raw' '2T'
        $p = @(New-QcowPartitionTable -LiteralPath $raw -Format Raw -Style Mbr)
        $p.Count | Should -Be 1
        $p[0].Table | Should -Be 'Mbr'
        $p[0].TypeId | Should -Be '83'
        $p[0].Offset | Should -Be 1MB
        $p[0].Offset + $p[0].Size | Should -Be 2TB
        Assert-ToolsAgree $raw $p 'dos'

        $small = New-RawDisk $dir 'mbr-small.raw' '1G'
        $q = @(New-QcowPartitionTable -LiteralPath $small -Format Raw -Style Mbr -Partition @(
                @{ Size = '100M'; Type = 'ef' }, @{ Size = '200M'; Type = '0x82' }, @{ Type = 'HPFS/NTFS/exFAT' }))
        $q.TypeId | Should -Be @('ef', '82', '07')
        Assert-ToolsAgree $small $q 'dos'
    }

    It 'refuses an MBR on a disk past 2 TiB, and sixty MBR partitions, naming the limit and changing nothing' {
        $raw = New-RawDisk $dir 'big-mbr.raw' '3T'
        $before = Get-DiskFingerprint $raw
        $e = $null
        New-QcowPartitionTable -LiteralPath $raw -Format Raw -Style Mbr -ErrorVariable e -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $e[0].FullyQualifiedErrorId | Should -Match '^QcowPS\.InvalidArgument'
        "$($e[0])" | Should -Match '2 TiB.*-Style Gpt'
        Get-DiskFingerprint $raw | Should -Be $before

        $small = New-RawDisk $dir 'sixty.raw' '1G'
        $before = Get-DiskFingerprint $small
        $sixty = 1..60 | ForEach-Object { @{ Size = '2M' } }
        New-QcowPartitionTable -LiteralPath $small -Format Raw -Style Mbr -Partition $sixty -ErrorVariable e -ErrorAction SilentlyContinue
        "$($e[0])" | Should -Match 'at most 59 partitions \(3 primary and 56 logical, numbered up to 60.*60 were given'
        Get-DiskFingerprint $small | Should -Be $before
    }

    It 'refuses bad partitions: an unknown key, a size not in sectors, too large, an unknown type, an MBR name' {
        $raw = New-RawDisk $dir 'bad.raw' '1G'
        $before = Get-DiskFingerprint $raw
        $cases = @(
            @{ Partition = @(@{ Size = '10M'; Colour = 'red' }); Match = "unknown key 'Colour'" }
            @{ Partition = @(@{ Size = 1000 }); Match = 'not a positive multiple of 512' }
            @{ Partition = @(@{ Size = '2G' }); Match = 'does not fit' }
            @{ Partition = @(@{ Type = 'Klingon data' }); Match = "Type 'Klingon data'" }
            @{ Partition = @(@{ Size = '10M'; Name = 'x' }); Style = 'Mbr'; Match = 'MBR partitions have no Name' }
            @{ Partition = @(@{ Name = 'first' }, @{ Size = '10M' }); Match = 'only the last partition may take the rest' }
        )
        foreach ($c in $cases) {
            $parts = $c.Partition
            $style = if ($c.Style) { $c.Style } else { 'Gpt' }
            $e = $null
            try {
                New-QcowPartitionTable -LiteralPath $raw -Format Raw -Style $style -Partition $parts -ErrorVariable e -ErrorAction SilentlyContinue | Out-Null
            } catch { $e = @($_) }
            "$($e[0])" | Should -Match $c.Match
            Get-DiskFingerprint $raw | Should -Be $before
        }
    }

    It 'refuses to replace a table or a whole-disk file system without -Force, byte-identical; -WhatIf writes nothing; -Force replaces' {
        $raw = New-RawDisk $dir 'force.raw' '256M'
        Invoke-GuestTool sgdisk '-n', '1:2048:+10M', '-c', '1:keep', $raw | Out-Null
        $hash = (Get-FileHash -LiteralPath $raw).Hash
        $e = $null
        New-QcowPartitionTable -LiteralPath $raw -Format Raw -ErrorVariable e -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $e[0].FullyQualifiedErrorId | Should -Match '^QcowPS\.PartitionTableExists'
        "$($e[0])" | Should -Match 'GPT partition table with 1 partition.*-Force'
        (Get-FileHash -LiteralPath $raw).Hash | Should -Be $hash
        New-QcowPartitionTable -LiteralPath $raw -Format Raw -Force -WhatIf | Should -BeNullOrEmpty
        (Get-FileHash -LiteralPath $raw).Hash | Should -Be $hash

        # GPT -> MBR: the old GPT's headers go, so nothing sees a GPT behind the new MBR.
        $p = @(New-QcowPartitionTable -LiteralPath $raw -Format Raw -Force -Style Mbr -WarningVariable w)
        $w | Should -BeNullOrEmpty
        Assert-ToolsAgree $raw $p 'dos'
        Invoke-GuestTool sgdisk '-v', $raw -SuccessCode 0, 1, 2 | Should -Not -Match 'GPT.*(damaged|corrupt)'
        # MBR -> GPT.
        $g = @(New-QcowPartitionTable -LiteralPath $raw -Format Raw -Force -Partition @{ Size = '64M'; Name = 'new' }, @{})
        Assert-SgdiskClean $raw
        Assert-ToolsAgree $raw $g 'gpt'

        $fs = New-RawDisk $dir 'wholefs.raw' '64M'
        Invoke-GuestTool mke2fs '-q', '-F', '-t', 'ext4', $fs | Out-Null
        $hash = (Get-FileHash -LiteralPath $fs).Hash
        New-QcowPartitionTable -LiteralPath $fs -Format Raw -ErrorVariable e -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        "$($e[0])" | Should -Match 'ext4 file system on the whole disk'
        (Get-FileHash -LiteralPath $fs).Hash | Should -Be $hash
    }

    It 'takes images from the pipeline and a qcow2 image, and qemu-img check stays clean' {
        $qcow = Join-Path $dir 'pipe.qcow2'
        Invoke-QemuImg 'create', '-q', '-f', 'qcow2', $qcow, '10G' | Out-Null
        $p = @(Get-Item -LiteralPath $qcow | New-QcowPartitionTable)
        $p.Count | Should -Be 1
        $p[0].Path | Should -Be $qcow
        (Get-QemuCheck -Path $qcow).ExitCode | Should -Be 0
    }
}

Describe 'New-QcowPartitionTable -Style Mbr with logical partitions, as sfdisk lays them out' -Skip:$SkipGuest {
    BeforeAll {
        Assert-GuestTools -Name $GuestTools
        $dir = New-QcowTestFolder

        # The same request made of sfdisk on a twin disk: three primary partitions, `,,E` (an extended
        # partition over the rest), then the logical ones; sizes in sectors, types in hex. This is the
        # layout we mean to write.
        function New-SfdiskTwin([string]$Name, [string]$Size, [object[]]$Request) {
            $twin = New-RawDisk $dir $Name $Size
            $script = [Collections.Generic.List[string]]::new()
            $script.Add('label: dos')
            for ($i = 0; $i -lt $Request.Count; $i++) {
                if ($i -eq 3) { $script.Add(',,E') }
                $sectors = if ($Request[$i].Size) { [long]$Request[$i].Size / 512 } else { '' }
                $script.Add(",$sectors,$($Request[$i].Hex)")
            }
            Invoke-GuestTool sfdisk '-q', $twin -InputText ($script -join "`n") | Out-Null
            $twin
        }

        # The -Partition hashtables of a request: its Size and Type, without the test's Hex column.
        function ConvertTo-PartitionArgument([object[]]$Request) {
            foreach ($r in $Request) {
                $h = @{}
                if ($r.Size) { $h.Size = $r.Size }
                if ($r.Type) { $h.Type = $r.Type }
                $h
            }
        }

        # Number, start, size and type of each partition as sfdisk --json lists it, one line each.
        function Get-SfdiskLines([string]$RawPath) {
            foreach ($e in (Get-SfdiskTable $RawPath).partitions) {
                '{0} start={1} size={2} type={3}' -f ($e.node -replace '^.*\D(\d+)$', '$1'), $e.start, $e.size, $e.type
            }
        }

        # The byte offsets (0-based) at which two files differ, as cmp -l lists them.
        function Get-DifferingOffsets([string]$A, [string]$B) {
            $out = Invoke-GuestTool cmp '-l', $A, $B -SuccessCode 0, 1
            foreach ($line in $out -split "`n") { if ($line -match '^\s*(\d+)\s') { [long]$Matches[1] - 1 } }
        }

        # The request's partitions written by New-QcowPartitionTable and by sfdisk agree everywhere.
        function Assert-AsSfdisk([string]$Name, [string]$Size, [object[]]$Request) {
            $raw = New-RawDisk $dir "$Name.raw" $Size
            $p = @(New-QcowPartitionTable -LiteralPath $raw -Format Raw -Style Mbr -Partition @(ConvertTo-PartitionArgument $Request) -WarningVariable w)
            $w | Should -BeNullOrEmpty
            $twin = New-SfdiskTwin "$Name-sfdisk.raw" $Size $Request

            # The numbers: 1-3 primary, 4 the extended partition to the end of the disk, 5.. the logical ones.
            $logicals = $Request.Count - 3
            $p.Count | Should -Be ($Request.Count + 1)
            $p.Number | Should -Be @(1..3 + 4 + (5..(4 + $logicals)))
            $p.Kind | Should -Be @(@('Primary') * 3 + 'Extended' + @(@('Logical') * $logicals))
            $p[3].TypeId | Should -Be '05'
            $p[3].Offset + $p[3].Size | Should -Be (Get-Item -LiteralPath $raw).Length
            $data = @($p | Where-Object Kind -ne 'Extended')
            for ($i = 0; $i -lt $Request.Count; $i++) {
                [Convert]::ToInt32($data[$i].TypeId, 16) | Should -Be ([Convert]::ToInt32($Request[$i].Hex, 16))
                if ($Request[$i].Size) { $data[$i].Size | Should -Be $Request[$i].Size }
                $data[$i].Offset % 1MB | Should -Be 0
            }

            # sfdisk lists the same table on both disks, and the files differ only in the random disk identifier.
            Get-SfdiskLines $raw | Should -Be @(Get-SfdiskLines $twin)
            $differ = @(Get-DifferingOffsets $raw $twin)
            $differ | Where-Object { $_ -lt 440 -or $_ -gt 443 } | Should -BeNullOrEmpty -Because 'only the disk identifier (bytes 440-443) is random'

            Assert-ToolsAgree $raw $p 'dos'
            $verify = Invoke-GuestTool sfdisk '--verify', $raw
            $verify | Should -Match 'No errors detected'
            $verify | Should -Not -Match 'warning|overlap|not aligned|exceeds'
            (Invoke-GuestTool fdisk '-l', $raw) | Should -Not -Match 'warning|does not start on physical sector boundary|overlap'

            $read = @(Get-QcowPartition -LiteralPath $raw -Format Raw -WarningVariable rw)
            $rw | Should -BeNullOrEmpty
            ($read | ForEach-Object { '{0} {1} {2} {3} {4}' -f $_.Number, $_.Kind, $_.TypeId, $_.Offset, $_.Size }) |
                Should -Be @($p | ForEach-Object { '{0} {1} {2} {3} {4}' -f $_.Number, $_.Kind, $_.TypeId, $_.Offset, $_.Size })
            , $p
        }
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'five partitions, the last taking the rest of the disk: three primary, one logical of a given size and one to the end' {
        $p = Assert-AsSfdisk 'five' '512M' @(
            @{ Size = 100MB; Hex = '83' }, @{ Size = 200MB; Type = 'Linux swap / Solaris'; Hex = '82' }, @{ Size = 100MB; Type = '07'; Hex = '07' },
            @{ Size = 50MB; Type = '0x0c'; Hex = '0c' }, @{ Hex = '83' })
        # Spelled out once: the extended partition follows partition 3, each logical one lies 1 MiB past its EBR.
        $p[3].Offset | Should -Be (1MB + 400MB)
        $p[4].Offset | Should -Be (1MB + 400MB + 1MB)
        $p[5].Offset | Should -Be (1MB + 400MB + 1MB + 50MB + 1MB)
        $p[5].Offset + $p[5].Size | Should -Be 512MB -Because 'the last partition takes the rest of the disk'
    }

    It 'six partitions with sizes off the 1 MiB grid and the last one sized: each EBR on the next 1 MiB boundary, the extended partition still to the end' {
        $p = Assert-AsSfdisk 'six' '256M' @(
            @{ Size = 100MB + 512; Hex = '83' }, @{ Size = 1MB; Type = 'ef'; Hex = 'ef' }, @{ Size = 20MB; Type = '8e'; Hex = '8e' },
            @{ Size = 30MB - 512; Type = '82'; Hex = '82' }, @{ Size = 1MB + 1536; Type = '0b'; Hex = '0b' }, @{ Size = 64MB; Type = 'fd'; Hex = 'fd' })
        $p[-1].Offset + $p[-1].Size | Should -BeLessThan 256MB
    }

    It 'nine partitions, six of them logical, the last taking the rest' {
        $request = @(1..8 | ForEach-Object { @{ Size = $_ * 10MB; Type = @('83', '82', '07', '0c', '8e', 'fd', '0e', 'a5')[$_ - 1]; Hex = @('83', '82', '07', '0c', '8e', 'fd', '0e', 'a5')[$_ - 1] } }) + @(@{ Hex = '83' })
        $p = Assert-AsSfdisk 'nine' '512M' $request
        $p[-1].Number | Should -Be 10
        $p[-1].Offset + $p[-1].Size | Should -Be 512MB
    }

    It 'fifty-nine partitions, the most fdisk and sfdisk make (numbers up to 60)' {
        $request = @(1..58 | ForEach-Object { @{ Size = 2MB; Hex = '83' } }) + @(@{ Hex = '83' })
        $p = Assert-AsSfdisk 'fiftynine' '256M' $request
        $p[-1].Number | Should -Be 60
    }

    It '-WhatIf writes nothing, byte-identical, on a blank disk and with -Force on a partitioned one' {
        $raw = New-RawDisk $dir 'whatif.raw' '256M'
        $request = 1..9 | ForEach-Object { @{ Size = '10M' } }
        $hash = (Get-FileHash -LiteralPath $raw).Hash
        New-QcowPartitionTable -LiteralPath $raw -Format Raw -Style Mbr -Partition $request -WhatIf | Should -BeNullOrEmpty
        (Get-FileHash -LiteralPath $raw).Hash | Should -Be $hash
        New-QcowPartitionTable -LiteralPath $raw -Format Raw -Style Mbr -Partition @{ Size = '10M' }, @{ Size = '10M' } | Out-Null
        $hash = (Get-FileHash -LiteralPath $raw).Hash
        New-QcowPartitionTable -LiteralPath $raw -Format Raw -Style Mbr -Partition $request -Force -WhatIf | Should -BeNullOrEmpty
        (Get-FileHash -LiteralPath $raw).Hash | Should -Be $hash
    }

    It 'refuses a logical partition that fits only without its EBR, and one past 2 TiB, naming it and changing nothing' {
        $raw = New-RawDisk $dir 'nofit.raw' '1G'
        $before = Get-DiskFingerprint $raw
        # After 1 MiB + 3 x 100 MiB, 1 GiB - 301 MiB is left: enough for a primary partition, 1 MiB short for a logical one.
        $e = $null
        New-QcowPartitionTable -LiteralPath $raw -Format Raw -Style Mbr -Partition @(
            @{ Size = '100M' }, @{ Size = '100M' }, @{ Size = '100M' }, @{ Size = 1GB - 301MB }, @{ Size = '1M' }) -ErrorVariable e -ErrorAction SilentlyContinue |
            Should -BeNullOrEmpty
        $e[0].FullyQualifiedErrorId | Should -Match '^QcowPS\.InvalidArgument'
        "$($e[0])" | Should -Match "Partition 4 \(logical partition 5\) of $(1GB - 301MB) bytes does not fit"
        Get-DiskFingerprint $raw | Should -Be $before

        $big = New-RawDisk $dir 'big-logical.raw' '3T'
        $before = Get-DiskFingerprint $big
        New-QcowPartitionTable -LiteralPath $big -Format Raw -Style Mbr -Partition (@(1..4 | ForEach-Object { @{ Size = '1G' } }) + @(@{})) -ErrorVariable e -ErrorAction SilentlyContinue |
            Should -BeNullOrEmpty
        "$($e[0])" | Should -Match '2 TiB.*Partition 5 \(logical partition 6\) would end.*-Style Gpt'
        Get-DiskFingerprint $big | Should -Be $before
    }

    It 'on a disk past 2 TiB, logical partitions below 2 TiB are written and the extended partition ends at 2 TiB' {
        $big = New-RawDisk $dir 'big-sized.raw' '3T'
        $p = @(New-QcowPartitionTable -LiteralPath $big -Format Raw -Style Mbr -Partition @(1..5 | ForEach-Object { @{ Size = '1G' } }))
        $p[3].Kind | Should -Be 'Extended'
        $p[3].Offset + $p[3].Size | Should -Be 2TB
        $p[-1].Number | Should -Be 6
        Assert-ToolsAgree $big $p 'dos'
        @(Get-QcowPartition -LiteralPath $big -Format Raw).Count | Should -Be 6
    }
}

Describe 'New-QcowPartitionTable on exabyte qcow2 images, checked through qemu-nbd and nbdkit' -Skip:$SkipGuest {
    BeforeAll {
        Assert-GuestTools -Name $GuestTools
        $dir = New-QcowTestFolder
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'a GPT on a <Label> qcow2 image: nbdkit finds each partition, the backup header is in the last sector, only the table clusters are written' -ForEach @(
        @{ Label = '1 EiB'; Size = '1E' }
        @{ Label = '2 EiB (the largest qcow2 with 2 MiB clusters)'; Size = '2E' }
    ) {
        $qcow = Join-Path $dir "exa-$($Size).qcow2"
        Invoke-QemuImg 'create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M', $qcow, $Size | Out-Null
        $length = (Get-QemuImageInfo -Path $qcow).'virtual-size'
        $p = @(New-QcowPartitionTable -LiteralPath $qcow -Partition @{ Size = '1G'; Name = 'boot' }, @{ Name = 'rest' })
        $p.Count | Should -Be 2
        $sectors = [long]($length / 512)
        $p[1].Offset + $p[1].Size | Should -BeLessOrEqual (($sectors - 33) * 512)
        $p[1].Offset + $p[1].Size | Should -BeGreaterThan (($sectors - 33) * 512 - 1MB)

        # Only the first and the last cluster hold data: the tables, nothing in between (qemu-img map
        # would walk an exabyte of L1 entries; check counts the clusters).
        $check = Get-QemuCheck -Path $qcow
        $check.ExitCode | Should -Be 0
        $check.AllocatedClusters | Should -Be 2

        Invoke-WithQemuNbd $qcow $dir {
            param($socket)
            Get-NbdkitPartitionSize $socket 1 | Should -Be 1GB
            Get-NbdkitPartitionSize $socket 2 | Should -Be $p[1].Size
        }

        $primary = Read-GptHeader $qcow 1
        $backup = Read-GptHeader $qcow ($sectors - 1)
        foreach ($h in $primary, $backup) {
            $h.Signature | Should -Be 'EFI PART'
            $h.HeaderCrcOk | Should -BeTrue
            $h.EntriesCrcOk | Should -BeTrue
            $h.FirstUsable | Should -Be 34
            $h.LastUsable | Should -Be ($sectors - 34)
        }
        $primary.MyLba | Should -Be 1
        $primary.AlternateLba | Should -Be ($sectors - 1)
        $backup.MyLba | Should -Be ($sectors - 1)
        $backup.AlternateLba | Should -Be 1
        $backup.EntriesLba | Should -Be ($sectors - 33)
        # The protective MBR covers the disk as far as 32 bits reach.
        $mbr = Read-QemuBytes $qcow 0 512
        $mbr[450] | Should -Be 0xEE
        [BitConverter]::ToUInt32($mbr, 454) | Should -Be 1
        [BitConverter]::ToUInt32($mbr, 458) | Should -Be ([uint32]::MaxValue)
    }
}
