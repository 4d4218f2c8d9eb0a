#Requires -Version 7.0
<#
    Pester 5 tests of Get-QcowTable: the L1, L2 and refcount tables, decoded.
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

Describe 'Get-QcowTable' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        # 4 KiB clusters: one L2 table covers 2 MiB, so these writes use L1 entries 0, 1 and 4.
        $tbl = New-QemuImage -Path (Join-Path $dir 'tables.qcow2') -Size 64M -Option @{ cluster_size = 4096 } -Write @(
            'write -P 1 0 4k', 'write -P 2 3M 4k', 'write -P 3 9M 8k', 'write -z 9M 4k')
        # 64 KiB clusters, two data clusters in one L2 table: header, refcount table, refcount block,
        # L1 table, one L2 table and two data clusters = 7 host clusters.
        $simple = New-QemuImage -Path (Join-Path $dir 'simple.qcow2') -Size 64M -Write 'write -P 1 0 64k', 'write -P 2 128k 64k'
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'L1 entries point at the L2 tables whose entries Get-QcowCluster reports' {
        $info = Get-QcowInfo $tbl
        $clusters = @(Get-QcowCluster $tbl -Allocated)
        $clusters.VirtualOffset | Should -Be @(0, 3MB, 9MB, (9MB + 4KB))
        $l1 = @(Get-QcowTable $tbl L1 -NonZero)
        $l1.Index | Should -Be @(0, 1, 4)
        $l1.Index | Should -Be @($clusters.L1Index | Select-Object -Unique)
        foreach ($e in $l1) {
            $e.Offset | Should -Be ($info.L1TableOffset + 8 * $e.Index)
            $e.Target % 4096 | Should -Be 0
            $e.Flags | Should -BeLike '*COPIED*'
        }
        foreach ($c in $clusters) {
            $l1Entry = $l1 | Where-Object Index -eq $c.L1Index
            $l2Entry = @(Get-QcowTable $tbl L2 -Index $c.L1Index | Where-Object Index -eq $c.L2Index)
            $l2Entry | Should -HaveCount 1
            $l2Entry[0].ParentIndex | Should -Be $c.L1Index
            $l2Entry[0].Offset | Should -Be ($l1Entry.Target + 8 * $c.L2Index)
            $l2Entry[0].Value | Should -Be $c.L2Entry
        }
        # The one data cluster overwritten with zeros keeps its host cluster and gets the ZERO flag.
        $zero = $clusters | Where-Object VirtualOffset -eq 9MB
        "$($zero.ClusterType)" | Should -BeIn @('Zero', 'ZeroAllocated')
        (Get-QcowTable $tbl L2 -Index $zero.L1Index | Where-Object Index -eq $zero.L2Index).Flags | Should -BeLike '*ZERO*'
    }

    It 'L2 Target is the data cluster''s host offset' {
        $c = Get-QcowCluster $tbl -Offset 3M -Length 4K
        $e = Get-QcowTable $tbl L2 -Index $c.L1Index | Where-Object Index -eq $c.L2Index
        $e.Target | Should -Be $c.HostOffset
        (Read-QcowBlock $tbl 3M 1 -Raw)[0] | Should -Be 2
    }

    It '-Index selects one L1 entry' {
        $e = @(Get-QcowTable $tbl L1 -Index 4)
        $e | Should -HaveCount 1
        $e[0].Index | Should -Be 4
        $e[0].Target | Should -BeGreaterThan 0
    }

    It 'RefcountBlock -NonZero counts exactly the allocated host clusters (7 here)' {
        $info = Get-QcowInfo $simple
        $entries = @(Get-QcowTable $simple RefcountBlock -NonZero)
        $entries | Should -HaveCount 7
        $entries | Should -HaveCount ($info.FileSize / $info.ClusterSize)
        $entries.Value | Select-Object -Unique | Should -Be 1
        $entries.Target | Should -Be @(0..6 | ForEach-Object { [long]$_ * 65536 })
        # Every host offset the metadata points at is among them.
        $used = @(0, $info.RefcountTableOffset, $info.L1TableOffset) + @((Get-QcowTable $simple L1 -NonZero).Target) +
            @((Get-QcowCluster $simple -Allocated).HostOffset) + @((Get-QcowTable $simple RefcountTable -NonZero).Target)
        ($used | Sort-Object -Unique) | Should -Be $entries.Target
    }

    It 'the refcount table has one block, and that block''s entries are stored where the table points' {
        $info = Get-QcowInfo $simple
        $rt = @(Get-QcowTable $simple RefcountTable -NonZero)
        $rt | Should -HaveCount 1
        $rt[0].Offset | Should -Be $info.RefcountTableOffset
        $first = Get-QcowTable $simple RefcountBlock -Index 0 | Select-Object -First 1
        $first.Offset | Should -Be $rt[0].Target
        $first.ParentIndex | Should -Be 0
        (Get-QcowTable $simple RefcountBlock -Index 0).Count | Should -Be (65536 * 8 / 16) -Because 'a 64 KiB block of 16-bit refcounts'
    }
}
