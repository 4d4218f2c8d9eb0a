#Requires -Version 7.0
<#
    Pester 5 tests of Read-QcowBlock: guest data at an offset, whole disks to a file, read back as qemu-io reads.
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

Describe 'Read-QcowBlock' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        # 4 MiB, 64 KiB clusters: data, an unaligned run, a zero cluster (v3 zero flag) and holes.
        $img = New-QemuImage -Path (Join-Path $dir 'data.qcow2') -Size 4M -Write @(
            'write -P 0xab 0 64k', 'write -P 0xcd 100000 5000', 'write -z 1M 64k', 'write -P 0xef 2M 128k')
        $imgRaw = Export-QemuRaw -Path $img -Destination (Join-Path $dir 'data.raw')

        # Backing chain: base has 0x11 in 0-128k; top overwrites 64k-128k with 0x22.
        $base = New-QemuImage -Path (Join-Path $dir 'base.qcow2') -Size 4M -Write 'write -P 0x11 0 128k'
        $top = New-QemuImage -Path (Join-Path $dir 'top.qcow2') -Size 4M -BackingFile 'base.qcow2' -BackingFormat qcow2 `
            -Write 'write -P 0x22 64k 64k'

        # Internal snapshot 'golden', then the active layer changes.
        $snap = New-QemuImage -Path (Join-Path $dir 'snap.qcow2') -Size 2M -Write 'write -P 0x11 0 128k'
        Invoke-QemuImg 'snapshot', '-c', 'golden', $snap | Out-Null
        Invoke-QemuIo $snap 'write -P 0x22 0 64k', 'write -P 0x33 1M 64k'
        $goldenRaw = Export-QemuRaw -Path $snap -Destination (Join-Path $dir 'golden.raw') -SnapshotName 'golden'
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It '-Raw returns one byte[] equal to what qemu-io wrote' {
        $out = @(Read-QcowBlock $img -Offset 100000 -Length 5000 -Raw)
        $out | Should -HaveCount 1
        $out[0].GetType() | Should -Be ([byte[]])
        $out[0].Length | Should -Be 5000
        Get-BytesHash $out[0] | Should -Be (Get-BytesHash (New-FilledBytes 5000 0xcd))
    }

    It '-Raw takes qemu-img style sizes: 2M / 128K' {
        $bytes = Read-QcowBlock $img '2M' '128K' -Raw
        $bytes.Length | Should -Be 128KB
        Get-BytesHash $bytes | Should -Be (Get-BytesHash (New-FilledBytes 128KB 0xef))
    }

    It '-Raw across data, holes and zero clusters equals qemu-img convert output' -ForEach @(
        @{ Offset = 60000; Length = 50000 }
        @{ Offset = 0; Length = 4MB }
        @{ Offset = 1MB - 100; Length = 70000 }
    ) {
        $bytes = Read-QcowBlock $img -Offset $Offset -Length $Length -Raw
        Get-BytesHash $bytes | Should -Be (Get-BytesHash (Get-FileBytes $imgRaw -Offset $Offset -Length $Length))
    }

    It 'default output: QcowBlock pieces of at most one cluster, contiguous, with the right data' {
        $blocks = @(Read-QcowBlock $img 1000 200000)
        $names = $blocks[0].PSObject.Properties.Name
        foreach ($p in 'Path', 'Offset', 'Length', 'Data', 'ClusterType', 'HostOffset', 'Layer') { $names | Should -Contain $p }
        $blocks[0].Offset | Should -Be 1000
        $blocks[0].Length | Should -Be (65536 - 1000)
        $next = 1000
        foreach ($b in $blocks) {
            $b | Should -BeOfType ([QcowPS.QcowBlock])
            $b.Offset | Should -Be $next
            $b.Length | Should -BeLessOrEqual 65536
            $b.Data.Length | Should -Be $b.Length
            [Math]::Floor($b.Offset / 65536) | Should -Be ([Math]::Floor(($b.Offset + $b.Length - 1) / 65536)) -Because 'a piece never crosses a cluster boundary'
            $next += $b.Length
        }
        $next | Should -Be 201000
        $joined = [IO.MemoryStream]::new()
        foreach ($b in $blocks) { $joined.Write($b.Data, 0, $b.Data.Length) }
        Get-BytesHash $joined.ToArray() | Should -Be (Get-BytesHash (Get-FileBytes $imgRaw -Offset 1000 -Length 200000))
    }

    It 'default output: ClusterType and HostOffset say how each piece is stored' {
        $blocks = @(Read-QcowBlock $img)
        $blocks | Should -HaveCount 64
        ($blocks | Measure-Object -Property Length -Sum).Sum | Should -Be 4MB
        $byOffset = @{}
        $blocks | ForEach-Object { $byOffset[$_.Offset] = $_ }
        $byOffset[[long]0].ClusterType | Should -Be 'Normal'
        $byOffset[[long]0].HostOffset | Should -Not -BeNullOrEmpty
        $byOffset[[long]1MB].ClusterType | Should -Be 'Zero'
        $byOffset[[long]1MB].HostOffset | Should -BeNullOrEmpty
        $byOffset[[long]3MB].ClusterType | Should -Be 'Unallocated'
        $byOffset[[long]3MB].HostOffset | Should -BeNullOrEmpty
        $byOffset[[long]2MB].ClusterType | Should -Be 'Normal'
        $blocks.Layer | Select-Object -Unique | Should -Be 0
        # Where the data is, host offsets agree with qemu-img map.
        $map = Get-QemuMap $img | Where-Object data
        foreach ($m in $map) {
            $byOffset[[long]$m.start].HostOffset | Should -Be $m.offset
        }
    }

    It 'in a backing chain, Layer says which layer supplied the data' {
        $blocks = @(Read-QcowBlock $top 0 192K)
        $blocks | Should -HaveCount 3
        $blocks.Layer | Should -Be @(1, 0, 1)
        $blocks.ClusterType | Should -Be @('Normal', 'Normal', 'Unallocated')
        $blocks[0].LayerPath | Should -Be $base
        $blocks[1].LayerPath | Should -Be $top
        Get-BytesHash $blocks[0].Data | Should -Be (Get-BytesHash (New-FilledBytes 65536 0x11))
        Get-BytesHash $blocks[1].Data | Should -Be (Get-BytesHash (New-FilledBytes 65536 0x22))
        Get-BytesHash $blocks[2].Data | Should -Be (Get-BytesHash (New-FilledBytes 65536 0))
        # Layers agree with qemu-img map's depth.
        $map = Get-QemuMap $top
        foreach ($b in $blocks) {
            $m = $map | Where-Object { $_.start -le $b.Offset -and $b.Offset -lt $_.start + $_.length }
            $b.Layer | Should -Be $m.depth
        }
    }

    It '-Snapshot <Snapshot> reads the snapshot''s data, as qemu-img convert -l snapshot.name does' -ForEach @(
        @{ Snapshot = 'golden' }
        @{ Snapshot = '1' }
    ) {
        $bytes = Read-QcowBlock $snap -Snapshot $Snapshot -Raw
        Get-BytesHash $bytes | Should -Be (Get-BytesHash (Get-FileBytes $goldenRaw))
        $bytes[0] | Should -Be 0x11
        $bytes[[int]1MB] | Should -Be 0
        (Read-QcowBlock $snap 0 1 -Raw)[0] | Should -Be 0x22 -Because 'the active layer has changed since the snapshot'
    }

    It '-Snapshot with default output returns QcowBlock pieces of the snapshot' {
        $blocks = @(Read-QcowBlock $snap -Snapshot golden -Offset 0 -Length 128K)
        $blocks | Should -HaveCount 2
        $blocks | ForEach-Object { Get-BytesHash $_.Data | Should -Be (Get-BytesHash (New-FilledBytes 65536 0x11)) }
        $blocks.Path | Should -Be @($snap, $snap)
    }

    It '-Snapshot with an unknown name is a non-terminating QcowPS.SnapshotNotFound' {
        Read-QcowBlock $snap -Snapshot 'nope' -Raw -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.SnapshotNotFound*'
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It '-OutFile of <Name> is byte-identical to qemu-img convert -O raw' -ForEach @(
        @{ Name = 'a standalone image'; File = 'data.qcow2'; Snapshot = $null }
        @{ Name = 'a backing chain'; File = 'top.qcow2'; Snapshot = $null }
        @{ Name = 'a snapshot'; File = 'snap.qcow2'; Snapshot = 'golden' }
    ) {
        $source = Join-Path $dir $File
        $expected = Export-QemuRaw -Path $source -Destination (Join-Path $dir "$File.expected.raw") -SnapshotName $Snapshot
        $target = Join-Path $dir "$File.out.raw"
        $params = @{ Path = $source; OutFile = $target }
        if ($Snapshot) { $params.Snapshot = $Snapshot }
        $out = Read-QcowBlock @params
        $out | Should -BeNullOrEmpty -Because '-OutFile writes nothing to the pipeline'
        (Get-Item -LiteralPath $target).Length | Should -Be (Get-Item -LiteralPath $expected).Length
        (Get-FileHash -LiteralPath $target).Hash | Should -Be (Get-FileHash -LiteralPath $expected).Hash
    }

    It '-OutFile with -Offset and -Length writes just that range' {
        $target = Join-Path $dir 'range.bin'
        Read-QcowBlock $img -Offset 64K -Length 128K -OutFile $target
        (Get-Item -LiteralPath $target).Length | Should -Be 128KB
        Get-BytesHash (Get-FileBytes $target) | Should -Be (Get-BytesHash (Get-FileBytes $imgRaw -Offset 64KB -Length 128KB))
    }

    It 'refuses to -OutFile over the image it reads, leaving the image intact' {
        # Opening the target with FileMode.Create before reading would truncate the image it reads.
        $victim = New-QemuImage -Path (Join-Path $dir 'victim.qcow2') -Size 1M -Write 'write -P 0x42 0 64k'
        $hash = (Get-FileHash -LiteralPath $victim).Hash
        Read-QcowBlock $victim -OutFile $victim -ErrorVariable err -ErrorAction SilentlyContinue
        (Get-FileHash -LiteralPath $victim).Hash | Should -Be $hash
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.InvalidArgument*'
        $err[0].Exception.Message | Should -BeLike '*the image being read*'
    }

    It 'reads a raw file with -Format Raw' {
        $bytes = Read-QcowBlock $imgRaw -Format Raw -Offset 100000 -Length 5000 -Raw
        Get-BytesHash $bytes | Should -Be (Get-BytesHash (New-FilledBytes 5000 0xcd))
    }
}
