#Requires -Version 7.0
<#
    Pester 5 tests of Write-QcowBlock -Discard against qemu-io's discard: on files the same image is made
    twice, qemu-io discards in one and Write-QcowBlock in the other, and qemu-img map and qemu-img compare
    must agree; on NBD exports (nbdkit memory, which trims, and an nbdkit export without SEND_TRIM) the
    bytes read back and nbdinfo --map are checked. Every server a test starts is stopped, pass or fail.
    Without the tools the tests are skipped, except on CI ($env:CI -eq 'true'), where they fail.
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = Test-SkipWithoutQemu

    # Each case: how to make the image (qemu-img create options, qemu-io writes), then the discards.
    # The writes leave data, zero-allocated, zero and unallocated clusters; the discards start and end
    # inside clusters and one reaches the disk's last, short cluster.
    $seed = 'write -P 0x11 0 1M', 'write -z 256k 64k', 'write -z -u 512k 64k', 'write -P 0x12 3M 1M'
    $FileCases = @(
        @{ Label = 'qcow2 v3'; Format = 'qcow2'; Option = @{}; Backing = $false; Write = $seed
            Discards = @('60k 1200k', '1300k 8k', '3M 1050112') }
        @{ Label = 'qcow2 v2'; Format = 'qcow2'; Option = @{ compat = '0.10' }; Backing = $false; Write = $seed
            Discards = @('60k 1200k', '1300k 8k', '3M 1050112') }
        @{ Label = 'qcow2 v3 over a backing file'; Format = 'qcow2'; Option = @{}; Backing = $true; Write = 'write -P 0x11 0 1M'
            Discards = @('64k 3M', '3600k 509440') }
        @{ Label = 'qcow2 v2 over a backing file'; Format = 'qcow2'; Option = @{ compat = '0.10' }; Backing = $true; Write = 'write -P 0x11 0 1M'
            Discards = @('64k 3M') }
        @{ Label = 'raw (hole punch)'; Format = 'raw'; Option = @{}; Backing = $false; Write = 'write -P 0x11 0 2M', 'write -P 0x12 3M 1M'
            Discards = @('6000 200k', '1M 10', '3M 1050112') }
    )
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-QcowPSModule | Out-Null
    $ProgressPreference = 'SilentlyContinue'

    function New-DiscardCase([string]$Path, $Case, [string]$Base) {
        <# The case's image, made by qemu-img and qemu-io only (so two calls give identically allocated files). #>
        $size = '4195840'   # 4 MiB + 3584: a last cluster that is short, the size a multiple of 512
        $params = @{ Path = $Path; Size = $size; Format = $Case.Format; Option = $Case.Option; Write = $Case.Write }
        if ($Case.Backing) { $params.BackingFile = $Base; $params.BackingFormat = 'qcow2' }
        New-QemuImage @params
    }

    function Get-MapText([string]$Path, [string]$Format) {
        <# qemu-img map as one line per run: start, length, depth, present, zero, data. #>
        (Invoke-QemuImg 'map', '--output=json', '-f', $Format, $Path | ConvertFrom-Json |
            ForEach-Object { "$($_.start) $($_.length) $($_.depth) $($_.present) $($_.zero) $($_.data)" }) -join "`n"
    }
}

Describe 'Write-QcowBlock -Discard on image files, against qemu-io discard' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        $base = New-QemuImage -Path (Join-Path $dir 'base.qcow2') -Size 2M -Write 'write -P 0x22 0 2M'
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It '<Label>: qemu-img map and the guest bytes equal those of qemu-io discard' -ForEach $FileCases {
        $theirs = New-DiscardCase (Join-Path $dir "qemu-$([Guid]::NewGuid().ToString('N')).img") $_ $base
        $ours = New-DiscardCase (Join-Path $dir "ours-$([Guid]::NewGuid().ToString('N')).img") $_ $base
        Get-MapText $ours $Format | Should -Be (Get-MapText $theirs $Format) -Because 'both start the same'
        Invoke-QemuIo -Path $theirs -Format $Format -Command ($Discards | ForEach-Object { "discard $_" })
        foreach ($d in $Discards) {
            $offset, $length = $d -split ' '
            $out = Write-QcowBlock -LiteralPath $ours -Offset $offset -Length $length -Discard -Format ($Format -eq 'raw' ? 'Raw' : 'Auto')
            $out | Should -BeNullOrEmpty
        }
        $before = Get-MapText $theirs $Format
        Get-MapText $ours $Format | Should -Be $before
        Assert-QemuIdentical -A $ours -B $theirs -FormatA $Format -FormatB $Format
        if ($Format -eq 'qcow2') { Assert-QemuClean $ours | Out-Null }
    }

    It 'the map changed at all (the cases discard something qemu-io discards)' {
        $img = New-QemuImage -Path (Join-Path $dir 'changed.qcow2') -Size 4M -Write 'write -P 0x11 0 1M', 'write -P 0x12 3M 1M'
        $before = Get-MapText $img 'qcow2'
        Write-QcowBlock -LiteralPath $img -Offset 0 -Length 1M -Discard
        Get-MapText $img 'qcow2' | Should -Not -Be $before
        Get-QemuIoPatternMismatch $img '0 0 1M', '0x12 3M 1M' | Should -BeNullOrEmpty
    }

    It '-Discard needs -Length, and goes with none of -Data, -InputFile and -Zero' {
        $img = New-QemuImage -Path (Join-Path $dir 'args.qcow2') -Size 1M -Write 'write -P 0x11 0 64k'
        $hash = Get-Hash $img
        { Write-QcowBlock $img -Offset 0 -Discard -ErrorAction Stop } | Should -Throw -ErrorId 'QcowPS.MissingLength*'
        { Write-QcowBlock $img -Offset 0 -Discard -Zero -Length 64k -ErrorAction Stop } | Should -Throw -ErrorId 'QcowPS.ConflictingParameters*'
        { Write-QcowBlock $img -Offset 0 -Discard -Length 2M -ErrorAction Stop } | Should -Throw -ErrorId 'QcowPS.InvalidArgument*'
        Get-Hash $img | Should -Be $hash
    }
}

Describe 'Write-QcowBlock -Discard on NBD exports' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        foreach ($tool in 'nbdkit', 'nbdinfo') {
            if (-not (Get-Command $tool -CommandType Application -ErrorAction Ignore)) { throw "$tool is missing (apt-get install nbdkit libnbd-bin; .ci/run does)" }
        }
        $dir = New-QcowTestFolder
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'nbdkit memory (SEND_TRIM): the range reads back as zeros and nbdinfo --map shows a hole' {
        $peer = Start-NbdPeer -Tool nbdkit -Folder $dir -SocketArgument '-U' -Arguments '-f', 'memory', '4M'
        try {
            (Get-QcowInfo $peer.Uri).NbdFlags | Should -Contain 'SEND_TRIM'
            Write-QcowBlock $peer.Uri -Offset 0 -Data (New-FilledBytes 1MB 0x33)
            Write-QcowBlock $peer.Uri -Offset 64KB -Discard -Length 512KB -WhatIf
            (Read-QcowBlock $peer.Uri -Offset 64KB -Length 4 -Raw) | Should -Be ([byte[]](0x33, 0x33, 0x33, 0x33))
            Write-QcowBlock $peer.Uri -Offset 64KB -Discard -Length 512KB
            Get-BytesHash (Read-QcowBlock $peer.Uri -Offset 64KB -Length 512KB -Raw) | Should -Be (Get-BytesHash (New-FilledBytes 512KB 0))
            Get-BytesHash (Read-QcowBlock $peer.Uri -Offset 0 -Length 64KB -Raw) | Should -Be (Get-BytesHash (New-FilledBytes 64KB 0x33))
            Get-BytesHash (Read-QcowBlock $peer.Uri -Offset 576KB -Length 448KB -Raw) | Should -Be (Get-BytesHash (New-FilledBytes 448KB 0x33))
            $map = (& nbdinfo --map $peer.Uri) -join "`n"
            $map | Should -Match '(?m)^\s*65536\s+524288\s+3\s+hole,zero' -Because "nbdinfo --map said:`n$map"
        } finally { Stop-NbdPeer $peer }
    }

    It 'an export without SEND_TRIM: no error and the data stays, as with qemu-io discard' {
        $backing = Join-Path $dir 'notrim.img'
        [IO.File]::WriteAllBytes($backing, (New-Object byte[] 1MB))
        # nbdkit's eval plugin without a trim script: a writable export that does not advertise SEND_TRIM.
        $peer = Start-NbdPeer -Tool nbdkit -Folder $dir -SocketArgument '-U' -Arguments '-f', 'eval',
            'get_size=echo 1048576',
            "pread=dd if='$backing' skip=`$4 count=`$3 iflag=skip_bytes,count_bytes status=none",
            "pwrite=dd of='$backing' seek=`$4 oflag=seek_bytes conv=notrunc status=none"
        try {
            $flags = (Get-QcowInfo $peer.Uri).NbdFlags
            $flags | Should -Not -Contain 'SEND_TRIM'
            $flags | Should -Not -Contain 'READ_ONLY'
            Write-QcowBlock $peer.Uri -Offset 0 -Data (New-FilledBytes 64KB 0x44)
            & qemu-io -f raw -c 'discard 0 64k' $peer.Uri | Out-Null
            $LASTEXITCODE | Should -Be 0 -Because 'qemu-io ignores a discard the export cannot take'
            Write-QcowBlock $peer.Uri -Offset 0 -Discard -Length 64KB -ErrorAction Stop
            Get-BytesHash (Read-QcowBlock $peer.Uri -Offset 0 -Length 64KB -Raw) | Should -Be (Get-BytesHash (New-FilledBytes 64KB 0x44))
        } finally { Stop-NbdPeer $peer }
    }
}
