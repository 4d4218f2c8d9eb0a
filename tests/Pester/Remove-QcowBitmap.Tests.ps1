#Requires -Version 7.0
<# Pester tests of Remove-QcowBitmap, checked with qemu-img info / check and qemu-nbd -B. #>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = Test-SkipWithoutQemu
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-QcowPSModule | Out-Null
    $ProgressPreference = 'SilentlyContinue'
    function New-BitmapImage([string]$name) {
        $img = New-QemuImage -Path (Join-Path $dir $name) -Size 2M
        Invoke-QemuImg 'bitmap', '--add', $img, 'b0' | Out-Null
        Invoke-QemuIo $img 'write -P 1 64k 4k'
        $img
    }
}

Describe 'Remove-QcowBitmap' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'does what qemu-img bitmap does, and qemu-img check stays clean' {
        $img = New-BitmapImage 'a.qcow2'
        Remove-QcowBitmap $img -Name 'b0'
        (Get-QemuBitmapInfo $img) | Should -BeNullOrEmpty
        (Get-QemuCheck $img).Corruptions | Should -Be 0
        (Get-QemuCheck $img).Leaks | Should -Be 0
    }

    It 'works on bitmaps piped from Get-QcowBitmap' {
        $img = New-BitmapImage 'p.qcow2'
        Get-QcowBitmap $img | Remove-QcowBitmap -Confirm:$false
        (Get-QemuBitmapInfo $img) | Should -BeNullOrEmpty
    }

    It '-WhatIf changes nothing' {
        $img = New-BitmapImage 'w.qcow2'
        $hash = (Get-FileHash $img).Hash
        Remove-QcowBitmap $img -Name 'b0' -WhatIf
        (Get-FileHash $img).Hash | Should -Be $hash
    }

    It 'a missing bitmap is QcowPS.BitmapNotFound and changes nothing' {
        $img = New-BitmapImage 'm.qcow2'
        $hash = (Get-FileHash $img).Hash
        Remove-QcowBitmap $img -Name 'nope' -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.BitmapNotFound*'
        (Get-FileHash $img).Hash | Should -Be $hash
    }
}
