#Requires -Version 7.0
<#
    Pester 5 tests of Get-QcowInfo: the inventory runbook (Get-ChildItem | Get-QcowInfo | Export-Csv)
    and every field compared with qemu-img info.
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

Describe 'qemu-img prerequisites' {
    It 'qemu-img and qemu-io are on PATH' {
        Assert-QemuToolsInIt
    }
}

Describe 'Inventory runbook: Get-ChildItem | Get-QcowInfo | Export-Csv' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        $images = [ordered]@{
            'small-512M.qcow2' = '512M'
            'exactly-1G.qcow2' = '1G'
            'web-2G.qcow2'     = '2G'
            'db-10G.qcow2'     = '10G'
            'archive-1T.qcow2' = '1T'
        }
        foreach ($name in $images.Keys) {
            $option = if ($name -eq 'db-10G.qcow2') { @{ compat = '0.10' } } else { $null }
            New-QemuImage -Path (Join-Path $dir $name) -Size $images[$name] -Option $option | Out-Null
        }
        # Not an image, and not matched by *.qcow2.
        Set-Content -LiteralPath (Join-Path $dir 'notes.txt') -Value 'not an image'
        $csv = Join-Path $dir 'inventory.csv'
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'exports the images over 1 GB, smallest first, with one row each' {
        Push-Location -LiteralPath $dir
        try {
            Get-ChildItem *.qcow2 | Get-QcowInfo | Where-Object VirtualSize -gt 1GB |
                Sort-Object VirtualSize | Export-Csv -Path $csv -NoTypeInformation
        } finally {
            Pop-Location
        }
        $rows = @(Import-Csv -LiteralPath $csv)
        $rows | Should -HaveCount 3
        $rows.Path | Should -Be @('web-2G.qcow2', 'db-10G.qcow2', 'archive-1T.qcow2' | ForEach-Object { Join-Path $dir $_ })
        $rows.VirtualSize | Should -Be @('2147483648', '10737418240', '1099511627776')
        $rows.Format | Should -Be @('Qcow2', 'Qcow2', 'Qcow2')
        $rows.Version | Should -Be @('3', '2', '3')
        $rows.ClusterSize | Should -Be @('65536', '65536', '65536')
        $rows.SnapshotCount | Should -Be @('0', '0', '0')
    }

    It 'writes every QcowImageInfo property of the contract as a CSV column' {
        Get-QcowInfo -LiteralPath (Join-Path $dir 'web-2G.qcow2') | Export-Csv -Path $csv -NoTypeInformation
        $columns = (Import-Csv -LiteralPath $csv)[0].PSObject.Properties.Name
        $contract = 'Path', 'Format', 'Version', 'VirtualSize', 'FileSize', 'ActualSize', 'ClusterSize', 'BackingFile',
            'BackingFormat', 'DataFile', 'CompressionType', 'RefcountBits', 'LazyRefcounts', 'ExtendedL2', 'Encrypted',
            'Dirty', 'Corrupt', 'SnapshotCount', 'L1Size', 'L1TableOffset', 'RefcountTableOffset', 'IncompatibleFeatures',
            'CompatibleFeatures', 'AutoclearFeatures', 'HeaderExtensions', 'BackingChainDepth'
        foreach ($name in $contract) { $columns | Should -Contain $name }
    }

    It 'reads an inventory CSV back: the Path column binds to -Path by property name' {
        Push-Location -LiteralPath $dir
        try {
            Get-ChildItem *.qcow2 | Get-QcowInfo | Export-Csv -Path $csv -NoTypeInformation
        } finally {
            Pop-Location
        }
        $again = @(Import-Csv -LiteralPath $csv | Get-QcowInfo)
        $again | Should -HaveCount 5
        ($again | Measure-Object -Property VirtualSize -Sum).Sum | Should -Be (512MB + 1GB + 2GB + 10GB + 1TB)
    }

    It 'takes FileInfo objects from Get-ChildItem' {
        $files = @(Get-ChildItem -LiteralPath $dir -Filter *.qcow2 | Sort-Object Name)
        $info = @($files | Get-QcowInfo)
        $info | Should -HaveCount 5
        $info.Path | Should -Be $files.FullName
        $info | ForEach-Object { $_ | Should -BeOfType ([QcowPS.QcowImageInfo]) }
    }

    It 'takes path strings from the pipeline, relative and absolute' {
        Push-Location -LiteralPath $dir
        try {
            $info = @('web-2G.qcow2', (Join-Path $dir 'db-10G.qcow2') | Get-QcowInfo)
        } finally {
            Pop-Location
        }
        $info.VirtualSize | Should -Be @(2GB, 10GB)
    }

    It 'expands wildcards in -Path' {
        $info = @(Get-QcowInfo -Path (Join-Path $dir '*-?G.qcow2') | Sort-Object VirtualSize)
        [IO.Path]::GetFileName($info[0].Path) | Should -Be 'exactly-1G.qcow2'
        $info.VirtualSize | Should -Be @(1GB, 2GB)
        @(Get-QcowInfo (Join-Path $dir '*.qcow2')) | Should -HaveCount 5
    }

    It 'accepts several paths and wildcards in one call' {
        $info = @(Get-QcowInfo (Join-Path $dir 'web-*'), (Join-Path $dir 'archive-*'))
        $info.VirtualSize | Should -Be @(2GB, 1TB)
    }
}

Describe 'Get-QcowInfo compared with qemu-img info' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder

        # v2: 4 KiB clusters over a raw backing file, one snapshot.
        New-QemuImage -Path (Join-Path $dir 'base.raw') -Size 64M -Format raw | Out-Null
        $v2 = New-QemuImage -Path (Join-Path $dir 'v2.qcow2') -Size 64M -Option @{ compat = '0.10'; cluster_size = 4096 } `
            -BackingFile 'base.raw' -BackingFormat raw -Write 'write -P 0x5a 1M 8k'
        Invoke-QemuImg 'snapshot', '-c', 'v2-snap', $v2 | Out-Null

        # v3: 128 KiB clusters, lazy refcounts, 8-bit refcounts, zstd, qcow2 backing, two snapshots, left dirty.
        $v3base = New-QemuImage -Path (Join-Path $dir 'v3-base.qcow2') -Size 256M -Write 'write -P 0x11 0 64k'
        $v3 = New-QemuImage -Path (Join-Path $dir 'v3.qcow2') -Size 256M `
            -Option ([ordered]@{ lazy_refcounts = 'on'; refcount_bits = 8; compression_type = 'zstd'; cluster_size = 131072 }) `
            -BackingFile 'v3-base.qcow2' -BackingFormat qcow2
        Invoke-QemuImg 'snapshot', '-c', 's1', $v3 | Out-Null
        Invoke-QemuImg 'snapshot', '-c', 's2', $v3 | Out-Null
        # With lazy refcounts, a write followed by abort leaves the dirty bit set.
        & qemu-io -c 'write -P 0x22 0 128k' -c 'abort' $v3 *> $null

        # A three-layer chain: raw <- qcow2 <- qcow2.
        $chainBase = New-QemuImage -Path (Join-Path $dir 'chain-base.raw') -Size 8M -Format raw
        $chainMid = New-QemuImage -Path (Join-Path $dir 'chain-mid.qcow2') -Size 8M -BackingFile 'chain-base.raw' -BackingFormat raw
        $chainTop = New-QemuImage -Path (Join-Path $dir 'chain-top.qcow2') -Size 8M -BackingFile 'chain-mid.qcow2' -BackingFormat qcow2

        $qed = New-QemuImage -Path (Join-Path $dir 'legacy.qed') -Size 16M -Format qed -Write 'write -P 3 0 4k'
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It '<Name> image: every field agrees with qemu-img info --output=json' -ForEach @(
        @{ Name = 'v2'; File = 'v2.qcow2'; Dirty = $false; Snapshots = 1 }
        @{ Name = 'v3'; File = 'v3.qcow2'; Dirty = $true; Snapshots = 2 }
        @{ Name = 'v3 base'; File = 'v3-base.qcow2'; Dirty = $false; Snapshots = 0 }
    ) {
        $path = Join-Path $dir $File
        $q = Get-QemuImageInfo $path
        $d = $q.'format-specific'.data
        # The images are what the test means them to be.
        $q.'dirty-flag' | Should -Be $Dirty
        @($q.PSObject.Properties.Name -eq 'snapshots' | ForEach-Object { $q.snapshots }).Count | Should -Be $Snapshots

        $i = Get-QcowInfo $path
        $i.Path | Should -Be $path
        "$($i.Format)" | Should -Be $q.format
        $i.VirtualSize | Should -Be $q.'virtual-size'
        $i.ClusterSize | Should -Be $q.'cluster-size'
        $i.ActualSize | Should -Be $q.'actual-size'
        $i.FileSize | Should -Be (Get-Item -LiteralPath $path).Length
        $i.Compat | Should -Be $d.compat
        $i.Version | Should -Be $(if ($d.compat -eq '0.10') { 2 } else { 3 })
        $i.RefcountBits | Should -Be $d.'refcount-bits'
        $i.LazyRefcounts | Should -Be ([bool]$d.'lazy-refcounts')
        "$($i.CompressionType)" | Should -Be $d.'compression-type'
        $i.ExtendedL2 | Should -Be ([bool]$d.'extended-l2')
        $i.Corrupt | Should -Be ([bool]$d.corrupt)
        $i.BackingFile | Should -Be $q.'backing-filename'
        $i.BackingFormat | Should -Be $q.'backing-filename-format'
        $i.FullBackingFile | Should -Be $q.'full-backing-filename'
        $i.Dirty | Should -Be $q.'dirty-flag'
        $i.SnapshotCount | Should -Be $Snapshots
        $i.Encrypted | Should -BeFalse
    }

    It 'v3: the lazy-refcounts bit and the dirty bit show in the feature flags' {
        $i = Get-QcowInfo (Join-Path $dir 'v3.qcow2')
        $i.CompatibleFeatures.HasFlag([QcowPS.Engine.Qcow2.Qcow2CompatibleFeatures]::LazyRefcounts) | Should -BeTrue
        $i.IncompatibleFeatures.HasFlag([QcowPS.Engine.Qcow2.Qcow2IncompatibleFeatures]::Dirty) | Should -BeTrue
        $i.IncompatibleFeatures.HasFlag([QcowPS.Engine.Qcow2.Qcow2IncompatibleFeatures]::CompressionType) | Should -BeTrue
        $i.HeaderExtensions | Should -Contain 'BackingFormat'
    }

    It 'QED and raw images: format, size and cluster size agree with qemu-img info' {
        $q = Get-QemuImageInfo $qed
        $i = Get-QcowInfo $qed
        "$($i.Format)" | Should -Be 'qed'
        $i.VirtualSize | Should -Be $q.'virtual-size'
        $i.ClusterSize | Should -Be $q.'cluster-size'
        $i.Version | Should -BeNullOrEmpty
        $raw = Get-QcowInfo (Join-Path $dir 'base.raw') -Format Raw
        $raw.VirtualSize | Should -Be 64MB
    }

    It '-BackingChain returns one object per layer, top first, with BackingChainDepth' {
        $layers = @(Get-QcowInfo $chainTop -BackingChain)
        $q = @(Get-QemuImageInfo $chainTop -BackingChain)
        $layers | Should -HaveCount 3
        $layers.Path | Should -Be @($chainTop, $chainMid, $chainBase)
        $layers.Path | Should -Be $q.filename
        $layers.BackingChainDepth | Should -Be @(2, 1, 0)
        $layers.Format | Should -Be @('Qcow2', 'Qcow2', 'Raw')
        $layers.BackingFile | Should -Be @('chain-mid.qcow2', 'chain-base.raw', $null)
        $layers.VirtualSize | Should -Be $q.'virtual-size'
    }

    It 'without -BackingChain there is one object, whose BackingChainDepth counts the layers below it' {
        $info = @(Get-QcowInfo $chainTop)
        $info | Should -HaveCount 1
        $info[0].BackingChainDepth | Should -Be 2
        (Get-QcowInfo $chainBase -Format Raw).BackingChainDepth | Should -Be 0
    }
}
