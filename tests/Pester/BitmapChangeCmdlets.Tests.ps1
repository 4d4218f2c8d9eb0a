#Requires -Version 7.0
<#
    Pester tests of Remove-, Clear-, Enable- and Disable-QcowBitmap: one body over the four cmdlets
    (they share their parameters and behaviour), each case checked with qemu-img info / check against
    what the matching qemu-img bitmap verb does. One file rather than one per cmdlet: four copies of
    the same four tests would be the same rule written four times.
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = Test-SkipWithoutQemu
    $Cases = @(
        @{ Cmdlet = 'Remove-QcowBitmap'; Before = $null
            Verify = { param($img) Get-QemuBitmapInfo $img | Should -BeNullOrEmpty } }
        @{ Cmdlet = 'Clear-QcowBitmap'; Before = $null
            Verify = { param($img) Get-QemuBitmapMap $img 'b0' | Should -Be @('0+2097152 clean') } }
        @{ Cmdlet = 'Disable-QcowBitmap'; Before = $null
            Verify = { param($img) (Get-QemuBitmapInfo $img).flags | Should -BeNullOrEmpty } }
        # Disabled by qemu-img itself, and checked to be: with our own Disable-QcowBitmap doing the set-up, a
        # Disable that did nothing would let every Enable test pass without Enable doing anything.
        @{ Cmdlet = 'Enable-QcowBitmap'
            Before = {
                param($img)
                Invoke-QemuImg 'bitmap', '--disable', $img, 'b0' | Out-Null
                @((Get-QemuBitmapInfo $img).flags) | Should -Not -Contain 'auto' -Because 'qemu-img bitmap --disable clears the auto flag'
            }
            Verify = { param($img) (Get-QemuBitmapInfo $img).flags | Should -Be @('auto') } }
    )
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-QcowPSModule | Out-Null
    $ProgressPreference = 'SilentlyContinue'
}

Describe '<Cmdlet>' -ForEach $Cases -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        function New-BitmapImage([string]$name) { New-BitmapTestImage $dir $name -Before $Before }
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'does what qemu-img bitmap does, and qemu-img check stays clean' {
        $img = New-BitmapImage 'a.qcow2'
        & $Cmdlet $img -Name 'b0'
        & $Verify $img
        (Get-QemuCheck $img).Corruptions | Should -Be 0
        (Get-QemuCheck $img).Leaks | Should -Be 0
    }

    It 'works on bitmaps piped from Get-QcowBitmap' {
        $img = New-BitmapImage 'p.qcow2'
        Get-QcowBitmap $img | & $Cmdlet -Confirm:$false
        & $Verify $img
    }

    It '-WhatIf changes nothing' {
        $img = New-BitmapImage 'w.qcow2'
        $hash = (Get-FileHash $img).Hash
        & $Cmdlet $img -Name 'b0' -WhatIf
        (Get-FileHash $img).Hash | Should -Be $hash
    }

    It 'a missing bitmap is QcowPS.BitmapNotFound and changes nothing' {
        $img = New-BitmapImage 'm.qcow2'
        $hash = (Get-FileHash $img).Hash
        & $Cmdlet $img -Name 'nope' -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.BitmapNotFound*'
        (Get-FileHash $img).Hash | Should -Be $hash
    }
}
