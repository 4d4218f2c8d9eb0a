#Requires -Version 7.0
<#
    Pester 5 tests of pipelines from one changing cmdlet into the next, on the same image.
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

Describe 'Pipelines from one changing cmdlet into the next, on the same image' -Skip:$SkipImages {
    # The objects these cmdlets return carry the image's Path, so a runbook pipes them on; the image must
    # be closed by the time the next cmdlet opens it for writing (as Get-QcowSnapshot | Remove-QcowSnapshot does).
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'New-QcowImage | New-QcowSnapshot: a new disk with a baseline snapshot' {
        $path = Join-Path $dir 'baseline.qcow2'
        $snap = @(New-QcowImage -Path $path -Size 1GB | New-QcowSnapshot -Name 'empty' -ErrorVariable err)
        $err | Should -HaveCount 0
        $snap.Name | Should -Be 'empty'
        (Get-QemuImageInfo $path).snapshots.name | Should -Be 'empty'
    }

    It 'New-QcowImage | Resize-QcowImage' {
        $path = Join-Path $dir 'made-then-grown.qcow2'
        $info = @(New-QcowImage -Path $path -Size 1GB | Resize-QcowImage -Size 2GB -ErrorVariable err)
        $err | Should -HaveCount 0
        $info.VirtualSize | Should -Be 2GB
        (Get-QemuImageInfo $path).'virtual-size' | Should -Be 2GB
    }

    It 'Resize-QcowImage | New-QcowSnapshot: grow, then mark the new size' {
        $path = New-QemuImage -Path (Join-Path $dir 'grown-then-snapped.qcow2') -Size 1G
        $snap = @(Resize-QcowImage -Path $path -Size 4GB | New-QcowSnapshot -Name 'after-grow' -ErrorVariable err)
        $err | Should -HaveCount 0
        $snap.DiskSize | Should -Be 4GB
        (Get-QemuImageInfo $path).snapshots.name | Should -Be 'after-grow'
    }

    It 'Test-QcowImage -Detailed | Repair-QcowImage, without anything collecting in between' {
        $path = New-QemuImage -Path (Join-Path $dir 'leaky.qcow2') -Size 1M -Write 'write -P 1 0 64k'
        Set-FileBigEndian -Path $path -Offset (Get-RefcountEntry $path 0).Offset -Value 2 -Size 2
        $r = @(Test-QcowImage -Path $path -Detailed | Repair-QcowImage -Confirm:$false -ErrorVariable err)
        $err | Should -HaveCount 0
        $r.LeaksFixed | Should -Be 1
        (Get-QemuCheck $path).ExitCode | Should -Be 0
    }
}
