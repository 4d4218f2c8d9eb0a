#Requires -Version 7.0
<#
    Pester 5 tests of Get-QcowCluster, compared with qemu-img map.
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

Describe 'Get-QcowCluster' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        # 1 MiB, 64 KiB clusters: data 0-128k, a zero cluster at 192k, data at 512k, holes elsewhere.
        $map = New-QemuImage -Path (Join-Path $dir 'map.qcow2') -Size 1M -Write @(
            'write -P 0x11 0 128k', 'write -z 192k 64k', 'write -P 0x22 512k 64k')
        $base = New-QemuImage -Path (Join-Path $dir 'base.qcow2') -Size 1M -Write 'write -P 0x11 0 128k', 'write -P 0x12 768k 64k'
        $top = New-QemuImage -Path (Join-Path $dir 'top.qcow2') -Size 1M -BackingFile 'base.qcow2' -BackingFormat qcow2 `
            -Write 'write -P 0x22 64k 64k', 'write -z 192k 64k'

        $src = New-QemuImage -Path (Join-Path $dir 'src.qcow2') -Size 1M -Write 'write -P 0x41 0 256k', 'write -P 0x42 512k 64k'
        $compressed = Join-Path $dir 'compressed.qcow2'
        Invoke-QemuImg 'convert', '-c', '-O', 'qcow2', $src, $compressed | Out-Null

        $shared = New-QemuImage -Path (Join-Path $dir 'shared.qcow2') -Size 1M -Write 'write -P 0x11 0 192k'
        Invoke-QemuImg 'snapshot', '-c', 's1', $shared | Out-Null
        Invoke-QemuIo $shared 'write -P 0x22 64k 64k'

        function ConvertTo-ClusterFlags($Extents, $ClusterSize, $DiskSize, [switch]$Qemu) {
            # One entry per cluster: data / present / depth, from qemu-img map or from Get-QcowCluster -Extent.
            $flags = @()
            for ($off = 0; $off -lt $DiskSize; $off += $ClusterSize) {
                if ($Qemu) {
                    $e = $Extents | Where-Object { $_.start -le $off -and $off -lt $_.start + $_.length }
                    $flags += '{0}/{1}/{2}' -f $e.data, $e.present, $e.depth
                } else {
                    $e = $Extents | Where-Object { $_.VirtualOffset -le $off -and $off -lt $_.VirtualOffset + $_.Length }
                    $data = $e.ClusterType -in 'Normal', 'Compressed'
                    $flags += '{0}/{1}/{2}' -f $data, ($e.ClusterType -ne 'Unallocated'), $e.Layer
                }
            }
            return , $flags
        }
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It '-Extent agrees with qemu-img map on allocation for <Name>' -ForEach @(
        @{ Name = 'data, a zero cluster and holes'; File = 'map.qcow2' }
        @{ Name = 'a backing chain'; File = 'top.qcow2' }
    ) {
        $path = Join-Path $dir $File
        $q = @(Get-QemuMap $path)
        $extents = @(Get-QcowCluster $path -Extent)
        # The extents tile the disk.
        $next = 0
        foreach ($e in $extents) { $e.VirtualOffset | Should -Be $next; $next += $e.Length }
        $next | Should -Be 1MB
        # Same data / present / depth for every cluster, merged into as many runs as qemu-img map reports.
        (ConvertTo-ClusterFlags $extents 65536 1MB) | Should -Be (ConvertTo-ClusterFlags $q 65536 1MB -Qemu)
        $extents | Should -HaveCount $q.Count
        foreach ($m in $q | Where-Object data) {
            ($extents | Where-Object VirtualOffset -eq $m.start).HostOffset | Should -Be $m.offset
        }
    }

    It '-Extent -Allocated leaves out the unallocated runs' {
        $extents = @(Get-QcowCluster $map -Extent -Allocated)
        $extents.ClusterType | Should -Be @('Normal', 'Zero', 'Normal')
        $extents.VirtualOffset | Should -Be @(0, 192KB, 512KB)
        ($extents | ForEach-Object Length) | Should -Be @(128KB, 64KB, 64KB)
    }

    It 'per-cluster output covers every guest cluster with its L2 entry decoded' {
        $clusters = @(Get-QcowCluster $map)
        $clusters | Should -HaveCount 16
        $clusters.VirtualOffset | Should -Be @(0..15 | ForEach-Object { $_ * 65536 })
        $clusters | ForEach-Object { $_ | Should -BeOfType ([QcowPS.QcowCluster]); $_.Length | Should -Be 65536 }
        $types = $clusters.ClusterType | ForEach-Object { "$_" }
        $types[0..3] | Should -Be @('Normal', 'Normal', 'Unallocated', 'Zero')
        $types[8] | Should -Be 'Normal'
        $clusters[0].L1Index | Should -Be 0
        $clusters[3].L2Index | Should -Be 3
        $clusters[3].L2Entry | Should -Be 1 -Because 'a zero cluster without host cluster is just the zero flag'
        $clusters[0].Copied | Should -BeTrue
        $clusters[0].Refcount | Should -Be 1
    }

    It '-Allocated lists only clusters with an L2 entry' {
        $clusters = @(Get-QcowCluster $map -Allocated)
        $clusters.VirtualOffset | Should -Be @(0, 64KB, 192KB, 512KB)
    }

    It '-Offset and -Length (size strings) restrict the clusters' {
        (Get-QcowCluster $map -Offset 64K -Length '128K').VirtualOffset | Should -Be @(64KB, 128KB)
    }

    It 'clusters of qemu-img convert -c are Compressed with CompressedSectors decoded from the L2 entry' {
        $clusters = @(Get-QcowCluster $compressed -Allocated)
        $clusters | Should -HaveCount 5
        $clusters.VirtualOffset | Should -Be @(0, 64KB, 128KB, 192KB, 512KB)
        foreach ($c in $clusters) {
            "$($c.ClusterType)" | Should -Be 'Compressed'
            $c.HostOffset | Should -Not -BeNullOrEmpty
            $c.CompressedSectors | Should -BeGreaterOrEqual 1
            $c.CompressedSize | Should -BeGreaterThan 0
            # cluster_bits 16: bit 62 compressed, bits 54-61 extra sectors, bits 0-53 host offset.
            $entry = [long]$c.L2Entry
            ($entry -shr 62) -band 1 | Should -Be 1
            $entry -band 0x3FFFFFFFFFFFFF | Should -Be $c.HostOffset
            (($entry -shr 54) -band 0xff) + 1 | Should -Be $c.CompressedSectors
        }
        (Get-QcowTable $compressed L2 -Index 0 -NonZero | Select-Object -First 1).Flags | Should -BeLike '*COMPRESSED*'
        # And the compressed image reads back as the source does.
        $out = Join-Path $dir 'compressed.out.raw'
        Read-QcowBlock $compressed -OutFile $out
        $expected = Export-QemuRaw -Path $src -Destination (Join-Path $dir 'src.raw')
        (Get-FileHash -LiteralPath $out).Hash | Should -Be (Get-FileHash -LiteralPath $expected).Hash
    }

    It 'clusters shared with a snapshot have Refcount 2 and no COPIED flag; a rewritten one has Refcount 1' {
        $clusters = @(Get-QcowCluster $shared -Allocated)
        $clusters.VirtualOffset | Should -Be @(0, 64KB, 128KB)
        $clusters.Refcount | Should -Be @(2, 1, 2)
        $clusters.Copied | Should -Be @($false, $true, $false)
        # The refcount blocks say the same.
        foreach ($c in $clusters) {
            $entry = Get-QcowTable $shared RefcountBlock -NonZero | Where-Object Target -eq $c.HostOffset
            $entry.Value | Should -Be $c.Refcount
        }
    }

    It 'a raw image has no L2 entries: per-cluster output is a per-file QcowPS.WrongImageFormat, -Extent works' {
        $raw = Export-QemuRaw -Path $map -Destination (Join-Path $dir 'map.raw')
        Get-QcowCluster $raw -Format Raw -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.WrongImageFormat*'
        $extents = @(Get-QcowCluster $raw -Format Raw -Extent)
        ($extents | Measure-Object -Property Length -Sum).Sum | Should -Be 1MB
    }
}
