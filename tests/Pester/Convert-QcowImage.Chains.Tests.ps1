#Requires -Version 7.0
<#
    Pester 5 tests of Convert-QcowImage on chains and snapshots: flattening them, and writing only
    the differences from a golden image.
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

Describe 'Convert-QcowImage: flattening chains and snapshots, writing only the differences' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder -Prefix 'qcowps-pester-chain'
        # golden <- patched <- vm: three qcow2 layers. The VM zeroed 128 KiB that the golden image holds.
        $golden = New-QemuImage (Join-Path $dir 'golden.qcow2') 32M -Write 'write -P 0x11 0 4M', 'write -P 0x12 8M 1M'
        $patched = New-QemuImage (Join-Path $dir 'patched.qcow2') 32M -BackingFile 'golden.qcow2' -BackingFormat qcow2 `
            -Write 'write -P 0x21 1M 1M', 'write -P 0x22 16M 64k'
        $vm = New-QemuImage (Join-Path $dir 'vm.qcow2') 32M -BackingFile 'patched.qcow2' -BackingFormat qcow2 `
            -Write 'write -P 0x31 1536k 64k', 'write -z 8M 128k', 'write -P 0x32 20M 4k'
        # What the VM reads, range by range (qemu-io read -P patterns).
        $vmView = @('0x11 0 1M', '0x21 1M 512k', '0x31 1536k 64k', '0x21 1600k 448k', '0x11 2M 2M', '0 4M 4M',
            '0 8M 128k', '0x12 8320k 896k', '0 9M 7M', '0x22 16M 64k', '0 16448k 4032k', '0x32 20M 4k', '0 20484k 12284k')
        # Clusters holding data once flattened: [0, 4M) 64, [8M+128K, 9M) 14, 16M 1, 20M 1.
        $flatDataClusters = 80
        # Clusters where the VM's data differs from golden: [1M, 2M) 16, 16M 1, 20M 1; and 2 zeroed clusters.
        $deltaDataClusters = 18
        $hashes = @{}
        foreach ($f in $golden, $patched, $vm) { $hashes[$f] = Get-Hash $f }
    }
    AfterAll { Remove-QcowTestFolder $dir }
    AfterEach {
        foreach ($f in $hashes.Keys) { Get-Hash $f | Should -Be $hashes[$f] -Because "'$f' is only read" }
        Get-Leftovers $dir | Should -BeNullOrEmpty
    }

    It 'a 3-layer backing chain is flattened into one standalone image that reads as the top layer' {
        $out = New-Name $dir 'standalone'
        $result = Convert-QcowImage $vm $out
        $result.VirtualSize | Should -Be 32MB
        $result.DataClusters | Should -Be $flatDataClusters
        $result.ZeroClusters | Should -Be (512 - $flatDataClusters)
        $q = Get-QemuImageInfo $out -BackingChain
        @($q).Count | Should -Be 1 -Because 'the flattened image needs no backing file'
        $q[0].PSObject.Properties.Name | Should -Not -Contain 'backing-filename'
        Assert-QemuIdentical $vm $out
        Assert-QemuClean $out | Out-Null
        Get-QemuIoPatternMismatch $out $vmView | Should -BeNullOrEmpty
        # The golden image can go: the standalone image still reads the same.
        $moved = Join-Path (New-QcowTestFolder -Prefix 'qcowps-pester-moved') 'standalone.qcow2'
        try {
            Copy-Item -LiteralPath $out -Destination $moved
            Get-QemuIoPatternMismatch $moved $vmView | Should -BeNullOrEmpty
        } finally {
            Remove-QcowTestFolder (Split-Path $moved)
        }
    }

    It 'a chain of mixed formats (raw <- QED <- qcow2) is flattened too' {
        $base = New-QemuImage (Join-Path $dir 'mixed-base.raw') 16M -Format raw -Write 'write -P 0x41 0 2M'
        $middle = New-QemuImage (Join-Path $dir 'mixed-middle.qed') 16M -Format qed -BackingFile 'mixed-base.raw' -BackingFormat raw `
            -Write 'write -P 0x42 1M 1M'
        $top = New-QemuImage (Join-Path $dir 'mixed-top.qcow2') 16M -BackingFile 'mixed-middle.qed' -BackingFormat qed `
            -Write 'write -P 0x43 1536k 64k', 'write -z 0 64k'
        $out = New-Name $dir 'mixed-flat'
        $result = Convert-QcowImage $top $out
        $result.DataClusters | Should -Be 31
        Assert-QemuIdentical $top $out
        Assert-QemuClean $out | Out-Null
        Get-QemuIoPatternMismatch $out '0 0 64k', '0x41 64k 960k', '0x42 1M 512k', '0x43 1536k 64k', '0x42 1600k 448k', '0 2M 14M' |
            Should -BeNullOrEmpty
        # A QED image alone converts as well.
        $fromQed = New-Name $dir 'from-qed'
        (Convert-QcowImage $middle $fromQed).DataClusters | Should -Be 32
        Assert-QemuIdentical $middle $fromQed -FormatA qed
    }

    It '-BackingFile: a standalone disk becomes an overlay of the golden image holding only what differs' {
        $standalone = (Convert-QcowImage $vm (New-Name $dir 'full')).Destination
        $out = Join-Path $dir 'vm-delta.qcow2'
        $result = Convert-QcowImage $standalone $out -BackingFile 'golden.qcow2' -BackingFormat qcow2
        $result.DataClusters | Should -Be $deltaDataClusters
        $result.DataClusters | Should -BeLessThan $flatDataClusters
        $result.FileSize | Should -BeLessThan ((Get-Item -LiteralPath $standalone).Length)

        $q = Get-QemuImageInfo $out
        $q.'backing-filename' | Should -Be 'golden.qcow2'
        $q.'backing-filename-format' | Should -Be 'qcow2'
        $q.'full-backing-filename' | Should -Be $golden
        # The overlay plus its backing file reads as the source: qemu-img compare follows the chain.
        Assert-QemuIdentical $standalone $out
        Assert-QemuIdentical $vm $out
        $check = Assert-QemuClean $out
        $check.AllocatedClusters | Should -Be $deltaDataClusters
        Get-QemuIoPatternMismatch $out $vmView | Should -BeNullOrEmpty
        # The 128 KiB the VM zeroed over golden's data are zero clusters in the overlay, not holes onto golden.
        $zeroed = @(Get-QemuMap $out | Where-Object { $_.start -le 8MB -and $_.start + $_.length -gt 8MB })
        $zeroed.Count | Should -Be 1
        $zeroed[0].depth | Should -Be 0
        $zeroed[0].zero | Should -BeTrue
        $zeroed[0].data | Should -BeFalse
    }

    It '-BackingFile from the chain itself writes the same differences, and a relative name is relative to the new image' {
        Push-Location -LiteralPath (New-QcowTestFolder -Prefix 'qcowps-pester-cwd')
        try {
            $out = Join-Path $dir 'vm-delta-from-chain.qcow2'
            # 'golden.qcow2' is found next to the destination, not in the current folder.
            $result = Convert-QcowImage $vm $out -BackingFile 'golden.qcow2'
            $result.DataClusters | Should -Be $deltaDataClusters
            (Get-QemuImageInfo $out).'backing-filename' | Should -Be 'golden.qcow2'
            Assert-QemuIdentical $vm $out
            Assert-QemuClean $out | Out-Null
        } finally {
            $here = (Get-Location).ProviderPath
            Pop-Location
            Remove-QcowTestFolder $here
        }
    }

    It '-BackingFile -Version 2: zeros over the backing file''s data still read as zeros' {
        $out = New-Name $dir 'v2-delta'
        Convert-QcowImage $vm $out -BackingFile 'golden.qcow2' -Version 2 | Out-Null
        (Get-QemuImageInfo $out).'format-specific'.data.compat | Should -Be '0.10'
        Assert-QemuIdentical $vm $out
        Assert-QemuClean $out | Out-Null
    }

    It '-Snapshot <Label>: the snapshot''s data becomes a standalone image; the image is not changed' -ForEach @(
        @{ Label = 'by name'; Snapshot = 'nightly' }
        @{ Label = 'by ID'; Snapshot = '1' }
    ) {
        $db = Join-Path $dir 'db.qcow2'
        if (-not (Test-Path -LiteralPath $db)) {
            New-QemuImage $db 32M -Write 'write -P 0x41 0 2M', 'write -P 0x42 8M 64k' | Out-Null
            Invoke-QemuImg 'snapshot', '-c', 'nightly', $db | Out-Null
            Invoke-QemuIo $db 'write -P 0x43 0 1M', 'write -z 8M 64k', 'write -P 0x44 16M 64k'
        }
        $before = Get-Hash $db
        $out = New-Name $dir "snapshot-$Snapshot"
        $result = Convert-QcowImage $db $out -Snapshot $Snapshot
        $result.VirtualSize | Should -Be 32MB
        $result.DataClusters | Should -Be 33
        Get-QemuIoPatternMismatch $out '0x41 0 2M', '0x42 8M 64k', '0 16M 64k', '0 2M 6M' | Should -BeNullOrEmpty
        $reference = Export-QemuRaw -Path $db -Destination (New-Name $dir 'snapshot-reference' 'raw') -SnapshotName nightly
        Assert-QemuIdentical $reference $out -FormatA raw
        Assert-QemuClean $out | Out-Null
        Get-Hash $db | Should -Be $before
        (Get-QemuImageInfo $db).snapshots.name | Should -Be @('nightly')
    }

    It '-Snapshot of a snapshot that does not exist: QcowPS.SnapshotNotFound, nothing written' {
        $out = New-Name $dir 'no-snapshot'
        $result = Convert-QcowImage $vm $out -Snapshot 'nosuch' -ErrorAction SilentlyContinue -ErrorVariable err
        $result | Should -BeNullOrEmpty
        Get-ErrorIds $err | Should -Be @('QcowPS.SnapshotNotFound')
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $out | Should -Not -Exist
    }
}
