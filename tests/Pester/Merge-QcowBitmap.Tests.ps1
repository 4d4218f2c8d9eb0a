#Requires -Version 7.0
<# Pester tests of Merge-QcowBitmap, checked against qemu-img bitmap --merge on a copy. #>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = Test-SkipWithoutQemu
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-QcowPSModule | Out-Null
    $ProgressPreference = 'SilentlyContinue'
    function New-TwoBitmapImage([string]$name) {
        $img = New-QemuImage -Path (Join-Path $dir $name) -Size 4M
        Invoke-QemuImg 'bitmap', '--add', '-g', '4096', $img, 'monday' | Out-Null
        Invoke-QemuIo $img 'write -P 1 64k 4k'
        Invoke-QemuImg 'bitmap', '--disable', $img, 'monday' | Out-Null
        Invoke-QemuImg 'bitmap', '--add', '-g', '65536', $img, 'tuesday' | Out-Null
        Invoke-QemuIo $img 'write -P 2 1M 5000', 'write -P 2 3M 100'
        $img
    }
}

Describe 'Merge-QcowBitmap' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'merges as qemu-img bitmap --merge does (different granularities), the source unchanged' {
        $ours = New-TwoBitmapImage 'ours.qcow2'
        $theirs = Join-Path $dir 'theirs.qcow2'
        Copy-Item $ours $theirs
        $before = Get-QemuBitmapMap $ours 'tuesday'
        Merge-QcowBitmap $ours -Name 'tuesday' -Target 'monday'
        Invoke-QemuImg 'bitmap', '--merge', 'tuesday', $theirs, 'monday'
        Get-QemuBitmapMap $ours 'monday' | Should -Be (Get-QemuBitmapMap $theirs 'monday')
        Get-QemuBitmapMap $ours 'tuesday' | Should -Be $before
        (Get-QemuCheck $ours).Corruptions | Should -Be 0
    }

    It 'takes the source from the pipeline' {
        $img = New-TwoBitmapImage 'pipe.qcow2'
        Get-QcowBitmap $img -Name 'tuesday' | Merge-QcowBitmap -Target 'monday'
        (Get-QcowBitmap $img -Name 'monday').DirtyBytes | Should -Be (4096 + 65536 + 65536)
    }

    It '-WhatIf changes nothing; a missing target is QcowPS.BitmapNotFound' {
        $img = New-TwoBitmapImage 'w.qcow2'
        $hash = (Get-FileHash $img).Hash
        Merge-QcowBitmap $img -Name 'tuesday' -Target 'monday' -WhatIf
        Merge-QcowBitmap $img -Name 'tuesday' -Target 'nope' -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.BitmapNotFound*'
        (Get-FileHash $img).Hash | Should -Be $hash
    }
}
