#Requires -Version 7.0
<#
    Pester tests of Remove-QcowBitmap: checked with qemu-img info / check against what
    `qemu-img bitmap --remove` does. The start image (New-BitmapTestImage) is shared with the other
    bitmap-changing cmdlets' tests, which have the same four tests.
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

Describe 'Remove-QcowBitmap' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        function New-BitmapImage([string]$name) { New-BitmapTestImage $dir $name }
        # What the matching qemu-img bitmap verb leaves: no bitmap.
        $Verify = { param($img) Get-QemuBitmapInfo $img | Should -BeNullOrEmpty }
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'does what qemu-img bitmap does, and qemu-img check stays clean' {
        $img = New-BitmapImage 'a.qcow2'
        Remove-QcowBitmap $img -Name 'b0'
        & $Verify $img
        (Get-QemuCheck $img).Corruptions | Should -Be 0
        (Get-QemuCheck $img).Leaks | Should -Be 0
    }

    It 'works on bitmaps piped from Get-QcowBitmap' {
        $img = New-BitmapImage 'p.qcow2'
        Get-QcowBitmap $img | Remove-QcowBitmap -Confirm:$false
        & $Verify $img
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
