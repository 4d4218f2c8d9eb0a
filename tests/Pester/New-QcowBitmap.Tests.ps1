#Requires -Version 7.0
<# Pester tests of New-QcowBitmap: bitmaps QEMU accepts, QEMU's limits, -WhatIf. #>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = Test-SkipWithoutQemu
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-QcowPSModule | Out-Null
    $ProgressPreference = 'SilentlyContinue'
}

Describe 'New-QcowBitmap' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'adds bitmaps qemu-img info lists, with QEMU''s default granularity, and qemu-img check stays clean' {
        $img = New-QemuImage -Path (Join-Path $dir 'new.qcow2') -Size 4M -Option @{ cluster_size = 4096 }
        $b = New-QcowBitmap $img -Name 'since-full'
        $b.Granularity | Should -Be 4096
        $b.Enabled | Should -BeTrue
        New-QcowBitmap $img -Name 'coarse' -Granularity 1M -Disabled | Out-Null
        $qemu = Get-QemuBitmapInfo $img
        $qemu.name | Should -Be @('since-full', 'coarse')
        ($qemu | Where-Object name -eq 'coarse').granularity | Should -Be 1MB
        ($qemu | Where-Object name -eq 'coarse').flags | Should -BeNullOrEmpty
        ($qemu | Where-Object name -eq 'since-full').flags | Should -Be @('auto')
        (Get-QemuCheck $img).Corruptions | Should -Be 0
        # QEMU records its writes in it.
        Invoke-QemuIo $img 'write -P 9 8k 100'
        (Get-QcowBitmap $img -Name 'since-full').DirtyBytes | Should -Be 4096
    }

    It 'refuses a taken name (QcowPS.BitmapExists) and a bad granularity, changing nothing' {
        $img = New-QemuImage -Path (Join-Path $dir 'dup.qcow2') -Size 1M
        New-QcowBitmap $img -Name 'a' | Out-Null
        $hash = (Get-FileHash $img).Hash
        New-QcowBitmap $img -Name 'a' -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.BitmapExists*'
        { New-QcowBitmap $img -Name 'b' -Granularity 3000 -ErrorAction Stop } | Should -Throw -ErrorId 'QcowPS.InvalidGranularity*'
        (Get-FileHash $img).Hash | Should -Be $hash
    }

    It '-WhatIf adds nothing' {
        $img = New-QemuImage -Path (Join-Path $dir 'whatif.qcow2') -Size 1M
        New-QcowBitmap $img -Name 'x' -WhatIf | Should -BeNullOrEmpty
        Get-QemuBitmapInfo $img | Should -BeNullOrEmpty
    }
}
