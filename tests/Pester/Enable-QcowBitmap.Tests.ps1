#Requires -Version 7.0
<#
    Pester tests of Enable-QcowBitmap: checked with qemu-img info / check against what
    `qemu-img bitmap --enable` does. The start image (New-BitmapTestImage) is shared with the other
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

Describe 'Enable-QcowBitmap' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        # The start image is disabled by qemu-img itself (not by our Disable-QcowBitmap), and checked to be:
        # otherwise a Disable that did nothing would let every test here pass without Enable doing anything.
        function New-BitmapImage([string]$name) {
            New-BitmapTestImage $dir $name -Before {
                param($img)
                Invoke-QemuImg 'bitmap', '--disable', $img, 'b0' | Out-Null
                @((Get-QemuBitmapInfo $img).flags) | Should -Not -Contain 'auto' -Because 'qemu-img bitmap --disable clears the auto flag'
            }
        }
        # What the matching qemu-img bitmap verb leaves: b0 with the auto flag again.
        $Verify = { param($img) (Get-QemuBitmapInfo $img).flags | Should -Be @('auto') }
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'does what qemu-img bitmap does, and qemu-img check stays clean' {
        $img = New-BitmapImage 'a.qcow2'
        Enable-QcowBitmap $img -Name 'b0'
        & $Verify $img
        (Get-QemuCheck $img).Corruptions | Should -Be 0
        (Get-QemuCheck $img).Leaks | Should -Be 0
    }

    It 'works on bitmaps piped from Get-QcowBitmap' {
        $img = New-BitmapImage 'p.qcow2'
        Get-QcowBitmap $img | Enable-QcowBitmap -Confirm:$false
        & $Verify $img
    }

    It '-WhatIf changes nothing' {
        $img = New-BitmapImage 'w.qcow2'
        $hash = (Get-FileHash $img).Hash
        Enable-QcowBitmap $img -Name 'b0' -WhatIf
        (Get-FileHash $img).Hash | Should -Be $hash
    }

    It 'a missing bitmap is QcowPS.BitmapNotFound and changes nothing' {
        $img = New-BitmapImage 'm.qcow2'
        $hash = (Get-FileHash $img).Hash
        Enable-QcowBitmap $img -Name 'nope' -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.BitmapNotFound*'
        (Get-FileHash $img).Hash | Should -Be $hash
    }
}
