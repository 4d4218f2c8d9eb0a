#Requires -Version 7.0
<#
    Pester 5 tests of Write-QcowBlock: patching guest data, read back with qemu-io.
    Images are made at run time in a temporary folder; QEMU's tools are the referee (TestHelpers.psm1).
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = Test-SkipWithoutQemu
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-QcowPSModule | Out-Null
    $ProgressPreference = 'SilentlyContinue'
}

Describe 'Write-QcowBlock: patching guest data' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        $elsewhere = New-QcowTestFolder -Prefix 'qcowps-pester-cwd'
    }
    AfterAll {
        Remove-QcowTestFolder $dir
        Remove-QcowTestFolder $elsewhere
    }

    It '-Data writes exactly the bytes given, across a cluster boundary, and nothing else' {
        $img = New-QemuImage -Path (Join-Path $dir 'data.qcow2') -Size 4M -Write 'write -P 0x11 0 256k'
        $bytes = New-RandomBytes -Length 10000 -Seed 7
        $out = Write-QcowBlock $img 60000 $bytes
        $out | Should -BeNullOrEmpty -Because 'without -PassThru nothing is returned'
        $raw = Export-QemuRaw -Path $img -Destination (Join-Path $dir 'data.raw')
        Get-BytesHash (Get-FileBytes $raw -Offset 60000 -Length 10000) | Should -Be (Get-BytesHash $bytes)
        Get-QemuIoPatternMismatch $img '0x11 0 60000', '0x11 70000 192144', '0 256k 3840k' | Should -BeNullOrEmpty
        (Get-QemuCheck $img).ExitCode | Should -Be 0
    }

    It 'a byte[] piped in (<Label>) is written as one block at -Offset' -ForEach @(
        @{ Label = 'unrolled: $bytes | Write-QcowBlock'; Wrap = $false; Offset = 65000 }
        @{ Label = 'whole: ,$bytes | Write-QcowBlock'; Wrap = $true; Offset = 131000 }
    ) {
        $img = New-QemuImage -Path (Join-Path $dir "piped-$Wrap.qcow2") -Size 1M
        $bytes = New-RandomBytes -Length 3000 -Seed 11
        if ($Wrap) { , $bytes | Write-QcowBlock $img -Offset $Offset } else { $bytes | Write-QcowBlock $img -Offset $Offset }
        $raw = Export-QemuRaw -Path $img -Destination (Join-Path $dir "piped-$Wrap.raw")
        Get-BytesHash (Get-FileBytes $raw -Offset $Offset -Length 3000) | Should -Be (Get-BytesHash $bytes)
        Get-QemuIoPatternMismatch $img "0 0 $Offset", "0 $($Offset + 3000) $(1MB - $Offset - 3000)" | Should -BeNullOrEmpty
        (Get-QemuCheck $img).ExitCode | Should -Be 0
    }

    It 'copies data inside an image and between images: Read-QcowBlock -Raw | Write-QcowBlock' {
        $src = New-QemuImage -Path (Join-Path $dir 'boot-src.qcow2') -Size 2M -Write 'write -P 0xeb 0 512', 'write -P 0x90 512 64k'
        $dst = New-QemuImage -Path (Join-Path $dir 'boot-dst.qcow2') -Size 2M
        Read-QcowBlock $src 0 512 -Raw | Write-QcowBlock $dst -Offset 0
        Read-QcowBlock $src 0 64K -Raw | Write-QcowBlock $src -Offset 1M
        Get-QemuIoPatternMismatch $dst '0xeb 0 512', '0 512 64k' | Should -BeNullOrEmpty
        Get-QemuIoPatternMismatch $src '0xeb 1M 512', '0x90 1049088 65024' | Should -BeNullOrEmpty
        (Get-QemuCheck $src).ExitCode | Should -Be 0
        (Get-QemuCheck $dst).ExitCode | Should -Be 0
    }

    It '-InputFile (a path relative to $PWD) writes the file, zero runs included' {
        $img = New-QemuImage -Path (Join-Path $dir 'input.qcow2') -Size 4M -Write 'write -P 0xff 0 4M'
        # 200000 bytes: random, then a cluster-aligned 64 KiB run of zeros, then random again.
        $content = New-RandomBytes -Length 200000 -Seed 3
        [Array]::Clear($content, 65536 - 4096, 65536)
        [IO.File]::WriteAllBytes((Join-Path $dir 'payload.bin'), $content)
        $saved = [Environment]::CurrentDirectory
        [Environment]::CurrentDirectory = $elsewhere
        Push-Location -LiteralPath $dir
        try {
            Write-QcowBlock input.qcow2 -Offset 4096 -InputFile payload.bin
        } finally {
            Pop-Location
            [Environment]::CurrentDirectory = $saved
        }
        $raw = Export-QemuRaw -Path $img -Destination (Join-Path $dir 'input.raw')
        Get-BytesHash (Get-FileBytes $raw -Offset 4096 -Length 200000) | Should -Be (Get-BytesHash $content)
        Get-QemuIoPatternMismatch $img '0xff 0 4096', '0 64k 64k', '0xff 204096 3990208' | Should -BeNullOrEmpty
        (Get-QemuCheck $img).ExitCode | Should -Be 0
    }

    It '-Zero -Length zeroes a range: whole clusters become zero clusters, partial ones are written' {
        $img = New-QemuImage -Path (Join-Path $dir 'zero.qcow2') -Size 1M -Write 'write -P 0x5a 0 1M'
        Write-QcowBlock $img -Offset 60K -Zero -Length '136K'
        Get-QemuIoPatternMismatch $img '0x5a 0 60k', '0 60k 136k', '0x5a 196k 828k' | Should -BeNullOrEmpty
        # 64k-192k are whole clusters: qemu-img map reports them as zero.
        $zeroRun = Get-QemuMap $img | Where-Object { $_.start -le 64KB -and 64KB -lt $_.start + $_.length }
        $zeroRun.zero | Should -BeTrue
        $zeroRun.start + $zeroRun.length | Should -BeGreaterOrEqual 192KB
        (Get-QemuCheck $img).ExitCode | Should -Be 0
    }

    It '-PassThru returns the written range as QcowBlock pieces holding the new data' {
        $img = New-QemuImage -Path (Join-Path $dir 'passthru.qcow2') -Size 1M
        $bytes = New-RandomBytes -Length 100000 -Seed 5
        $blocks = @(Write-QcowBlock $img -Offset 50000 -Data $bytes -PassThru)
        $blocks.Count | Should -BeGreaterThan 1
        $blocks[0].Offset | Should -Be 50000
        $next = 50000
        $joined = [IO.MemoryStream]::new()
        foreach ($b in $blocks) {
            $b | Should -BeOfType ([QcowPS.QcowBlock])
            $b.Path | Should -Be $img
            $b.Offset | Should -Be $next
            $b.Length | Should -BeLessOrEqual 65536
            "$($b.ClusterType)" | Should -Be 'Normal'
            $b.HostOffset | Should -Not -BeNullOrEmpty
            $joined.Write($b.Data, 0, $b.Data.Length)
            $next += $b.Length
        }
        $next | Should -Be 150000
        Get-BytesHash $joined.ToArray() | Should -Be (Get-BytesHash $bytes)
        # Host offsets agree with qemu-img map.
        # Every piece's host offset is where qemu-img map puts that guest offset.
        $map = @(Get-QemuMap $img)
        foreach ($b in $blocks) {
            $m = $map | Where-Object { $_.start -le $b.Offset -and $b.Offset -lt $_.start + $_.length } | Select-Object -First 1
            $m.data | Should -BeTrue -Because "qemu-img map has the piece at $($b.Offset) as data"
            $b.HostOffset | Should -Be ($m.offset + ($b.Offset - $m.start))
        }
        $zeros = @(Write-QcowBlock $img -Offset 0 -Zero -Length 64KB -PassThru)
        $zeros | Should -HaveCount 1
        "$($zeros[0].ClusterType)" | Should -BeIn 'Zero', 'ZeroAllocated'
        Get-BytesHash $zeros[0].Data | Should -Be (Get-BytesHash (New-FilledBytes 65536 0))
    }

    It 'over a backing file, the untouched parts of a cluster still read from the backing file; the backing file is not changed' {
        $base = New-QemuImage -Path (Join-Path $dir 'cow-base.qcow2') -Size 3M -Write 'write -P 0x11 0 3M'
        $baseHash = Get-Hash $base
        $top = Join-Path $dir 'cow-top.qcow2'
        New-QcowImage -Path $top -BackingFile 'cow-base.qcow2' -BackingFormat qcow2 | Out-Null
        Write-QcowBlock $top -Offset 1000 -Data (New-FilledBytes 100 0x22)
        Write-QcowBlock $top -Offset 1M -Zero -Length 64KB
        Write-QcowBlock $top -Offset 2MB -Zero -Length 100
        Get-QemuIoPatternMismatch $top @(
            '0x11 0 1000', '0x22 1000 100', '0x11 1100 64436', '0x11 64k 960k',
            '0 1M 64k', '0x11 1088k 960k', '0 2M 100', '0x11 2097252 1048476') | Should -BeNullOrEmpty
        $map = @(Get-QemuMap $top)
        ($map | Where-Object { $_.start -eq 0 }).depth | Should -Be 0
        ($map | Where-Object { $_.start -eq 64KB }).depth | Should -Be 1
        Get-Hash $base | Should -Be $baseHash
        (Get-QemuCheck $top).ExitCode | Should -Be 0
    }

    It 'a write into a compressed cluster keeps the rest of the cluster' {
        $plain = New-QemuImage -Path (Join-Path $dir 'to-compress.qcow2') -Size 1M -Write 'write -P 0x41 0 256k'
        $img = Join-Path $dir 'compressed.qcow2'
        Invoke-QemuImg 'convert', '-c', '-O', 'qcow2', $plain, $img | Out-Null
        (Get-QemuCheck $img).CompressedClusters | Should -BeGreaterThan 0
        Write-QcowBlock $img -Offset 70000 -Data (New-FilledBytes 500 0x42)
        Get-QemuIoPatternMismatch $img '0x41 0 70000', '0x42 70000 500', '0x41 70500 191644', '0 256k 768k' | Should -BeNullOrEmpty
        (Get-QemuCheck $img).ExitCode | Should -Be 0
        "$((Get-QcowCluster $img -Offset 64K -Length 1).ClusterType)" | Should -Be 'Normal'
    }

    It 'writing past the end (<Label>) is QcowPS.InvalidArgument and changes nothing' -ForEach @(
        @{ Label = 'offset at the end'; Params = @{ Offset = 4MB; Data = [byte[]](1) } }
        @{ Label = 'a range that crosses the end'; Params = @{ Offset = 4MB - 10; Data = (New-FilledBytes 100 1) } }
        @{ Label = 'offset far beyond the end'; Params = @{ Offset = 1TB; Data = [byte[]](1, 2, 3) } }
        @{ Label = '-Zero across the end'; Params = @{ Offset = 4MB - 4KB; Zero = $true; Length = 8KB } }
    ) {
        $img = New-QemuImage -Path (Join-Path $dir 'end.qcow2') -Size 4M -Write 'write -P 0x31 4032k 64k'
        $hash = Get-Hash $img
        Write-QcowBlock -Path $img @Params -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.InvalidArgument,*'
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        Get-Hash $img | Should -Be $hash
        Remove-Item -LiteralPath $img
    }

    It '-InputFile longer than the rest of the disk is an error and changes nothing' {
        $img = New-QemuImage -Path (Join-Path $dir 'small.qcow2') -Size 64K
        [IO.File]::WriteAllBytes((Join-Path $dir 'too-long.bin'), (New-FilledBytes 70000 0x12))
        $hash = Get-Hash $img
        Write-QcowBlock $img -InputFile (Join-Path $dir 'too-long.bin') -ErrorVariable err -ErrorAction SilentlyContinue
        Get-ErrorIds $err | Should -Be 'QcowPS.InvalidArgument'
        Get-Hash $img | Should -Be $hash
    }

    It 'an image that a running qemu-io holds is QcowPS.ImageInUse / ResourceBusy, and left alone' -Skip:(-not $IsLinux) {
        $img = New-QemuImage -Path (Join-Path $dir 'running-vm.qcow2') -Size 1M -Write 'write -P 0x61 0 64k'
        $qemu = Start-QemuIoHolder $img
        try {
            $hash = Get-Hash $img
            Write-QcowBlock $img -Offset 0 -Data (New-FilledBytes 512 0x62) -ErrorVariable err -ErrorAction SilentlyContinue
            $err | Should -HaveCount 1
            $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.ImageInUse,*'
            $err[0].CategoryInfo.Category | Should -Be 'ResourceBusy'
            Get-Hash $img | Should -Be $hash
        } finally {
            Stop-QemuIoHolder $qemu
        }
        Get-QemuIoPatternMismatch $img '0x61 0 64k' | Should -BeNullOrEmpty
        Write-QcowBlock $img -Offset 0 -Data (New-FilledBytes 512 0x62)
        Get-QemuIoPatternMismatch $img '0x62 0 512' | Should -BeNullOrEmpty -Because 'the write goes through once QEMU has let go'
    }

    It 'an image QcowPS itself has open (<Mode>) is QcowPS.ImageInUse' -Skip:(-not $IsLinux) -ForEach @(
        @{ Mode = 'for writing'; Writable = $true }
        @{ Mode = 'for reading'; Writable = $false }
    ) {
        $img = New-QemuImage -Path (Join-Path $dir "own-open-$Writable.qcow2") -Size 1M
        $hash = Get-Hash $img
        $held = [QcowPS.Engine.DiskImage]::Open($img, [QcowPS.Engine.OpenOptions]@{ Writable = $Writable })
        try {
            Write-QcowBlock $img -Offset 0 -Data ([byte[]](1, 2, 3)) -ErrorVariable err -ErrorAction SilentlyContinue
            Get-ErrorIds $err | Should -Be 'QcowPS.ImageInUse'
            $err[0].CategoryInfo.Category | Should -Be 'ResourceBusy'
        } finally {
            $held.Dispose()
        }
        Get-Hash $img | Should -Be $hash
        Write-QcowBlock $img -Offset 0 -Data ([byte[]](1, 2, 3))
        Get-QemuIoPatternMismatch $img '1 0 1', '2 1 1', '3 2 1' | Should -BeNullOrEmpty
    }

    It '-Path takes a wildcard that names one image; one that names two is a terminating error' {
        $one = New-QemuImage -Path (Join-Path $dir 'wild-alpha.qcow2') -Size 1M
        New-QemuImage -Path (Join-Path $dir 'wild-beta.qcow2') -Size 1M | Out-Null
        Write-QcowBlock (Join-Path $dir 'wild-al*.qcow2') -Offset 0 -Data (New-FilledBytes 16 0x71)
        Get-QemuIoPatternMismatch $one '0x71 0 16' | Should -BeNullOrEmpty
        $hashes = Get-ChildItem -LiteralPath $dir -Filter 'wild-*.qcow2' | Get-FileHash
        { Write-QcowBlock (Join-Path $dir 'wild-*.qcow2') -Offset 0 -Data (New-FilledBytes 16 0x72) -ErrorAction SilentlyContinue } |
            Should -Throw -ErrorId 'QcowPS.OneImageOnly,*'
        (Get-ChildItem -LiteralPath $dir -Filter 'wild-*.qcow2' | Get-FileHash).Hash | Should -Be $hashes.Hash
    }

    It 'a missing image is QcowPS.FileNotFound and creates no file' {
        $missing = Join-Path $dir 'not-there.qcow2'
        Write-QcowBlock $missing -Offset 0 -Data ([byte[]](1)) -ErrorVariable err -ErrorAction SilentlyContinue
        Get-ErrorIds $err | Should -Be 'QcowPS.FileNotFound'
        $missing | Should -Not -Exist
    }
}
