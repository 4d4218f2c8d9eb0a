#Requires -Version 7.0
<#
    Pester 5 tests of the default format views (QcowPS.format.ps1xml): they fit 120 columns.
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

Describe 'Default format views' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        $longBase = New-QemuImage -Path (Join-Path $dir 'a-rather-long-backing-file-name-used-by-the-monthly-inventory-report.qcow2') `
            -Size 4M -Write 'write -P 0x11 0 64k'
        $img = New-QemuImage -Path (Join-Path $dir 'an-equally-long-overlay-image-name-for-the-web-farm-0001.qcow2') -Size 4M `
            -BackingFile ([IO.Path]::GetFileName($longBase)) -BackingFormat qcow2 -Write 'write -P 0x22 64k 64k', 'write -z 128k 64k'
        Invoke-QemuImg 'snapshot', '-c', 'a-snapshot-name-that-is-longer-than-the-name-column-allows', $img | Out-Null
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It '<Type> table view: headers present, human units, every line within 120 columns' -ForEach @(
        @{ Type = 'QcowImageInfo'; Run = { param($p) Get-QcowInfo $p -BackingChain }
            Headers = 'Format', 'VirtualSize', 'FileSize', 'Snaps', 'Flags', 'BackingFile', 'Name'; Expect = '4 MiB' }
        @{ Type = 'QcowSnapshot'; Run = { param($p) Get-QcowSnapshot $p }
            Headers = 'Id', 'Date (UTC)', 'DiskSize', 'VmStateSize', 'Image', 'Name'; Expect = '4 MiB' }
        @{ Type = 'QcowBlock'; Run = { param($p) Read-QcowBlock $p 0 192K }
            Headers = 'Offset', 'Length', 'ClusterType', 'Layer', 'HostOffset', 'Data'; Expect = '0x10000' }
        @{ Type = 'QcowCluster'; Run = { param($p) Get-QcowCluster $p }
            Headers = 'VirtualOffset', 'Length', 'ClusterType', 'HostOffset', 'Refcount', 'Copied', 'Layer', 'L2Entry'; Expect = '64 KiB' }
        @{ Type = 'QcowCluster -Extent'; Run = { param($p) Get-QcowCluster $p -Extent }
            Headers = 'VirtualOffset', 'Length', 'ClusterType', 'Layer', 'HostOffset', 'Image'; Expect = '3.81 MiB' }
        @{ Type = 'QcowTableEntry'; Run = { param($p) Get-QcowTable $p L2 -NonZero }
            Headers = 'Table', 'Index', 'Offset', 'Value', 'Target', 'Flags'; Expect = 'ZERO' }
    ) {
        $objects = @(& $Run $img)
        $objects.Count | Should -BeGreaterThan 0
        $text = $objects | Out-String -Width 120
        $stats = Get-TextLineStats $text
        $stats.MaxLength | Should -BeLessOrEqual 120
        $headerPattern = '^\s*' + (($Headers | ForEach-Object { [regex]::Escape($_) }) -join '\s+') + '\s*$'
        @($stats.Lines -match $headerPattern) | Should -HaveCount 1 -Because "the table header is '$($Headers -join ' ')'"
        $text | Should -BeLike "*$Expect*"
        # One row per object (header, dashes, rows; blank lines aside).
        @($stats.Lines | Where-Object { $_.Trim() }).Count | Should -Be ($objects.Count + 2)
    }

    It 'QcowImageInfo list view shows sizes in units and in bytes, offsets in hex' {
        $text = Get-QcowInfo $img | Format-List | Out-String -Width 120
        (Get-TextLineStats $text).MaxLength | Should -BeLessOrEqual 120
        $text | Should -Match 'VirtualSize\s+:\s+4 MiB \(4194304 bytes\)'
        $text | Should -Match 'L1TableOffset\s+:\s+0x[0-9A-F]+'
        $text | Should -Match 'BackingChainDepth\s+:\s+1'
        $text | Should -Match 'HeaderExtensions\s+:\s+BackingFormat'
    }

    It 'Format-List works for <Type>' -ForEach @(
        @{ Type = 'QcowSnapshot'; Run = { param($p) Get-QcowSnapshot $p }; Property = 'L1TableOffset' }
        @{ Type = 'QcowBlock'; Run = { param($p) Read-QcowBlock $p 0 4K }; Property = 'ClusterType' }
        @{ Type = 'QcowCluster'; Run = { param($p) Get-QcowCluster $p -Allocated }; Property = 'L2Index' }
        @{ Type = 'QcowTableEntry'; Run = { param($p) Get-QcowTable $p L1 }; Property = 'Target' }
    ) {
        $text = & $Run $img | Format-List | Out-String -Width 120
        $text | Should -Match "(?m)^$Property\s+:"
        $text | Should -Match '(?m)^Path\s+:'
        (& $Run $img | Format-List * | Out-String -Width 120) | Should -Match "(?m)^$Property\s+:"
    }

    It 'the bitmap views name an NBD export by scheme, export and socket file, within 120 columns; a file by its name' {
        $long = '/tmp/' + ('deep-folder/' * 8) + 'qemu-nbd.sock'
        $uri = "nbds+unix:///vm-disk?socket=$long&tls-certificates=/etc/pki/qemu/clients/backup-host"
        $bitmap = [QcowPS.QcowBitmap]@{ Path = $uri; Name = 'b1'; DirtyBytes = 1MB }
        $extent = [QcowPS.QcowBitmapExtent]@{ Path = $uri; Name = 'b1'; Offset = 0; Length = 1MB; Dirty = $true }
        foreach ($o in $bitmap, $extent) {
            $text = $o | Out-String -Width 120
            (Get-TextLineStats $text).MaxLength | Should -BeLessOrEqual 120
            $text | Should -Match ([regex]::Escape('nbds+unix:///vm-disk?socket=qemu-nbd.sock'))
        }
        $bitmap.Path = '/var/lib/images/vm [1].qcow2'
        $bitmap | Out-String -Width 120 | Should -Match ([regex]::Escape('vm [1].qcow2'))
        $bitmap | Out-String -Width 120 | Should -Not -Match ([regex]::Escape('/var/lib'))
    }
}
