#Requires -Version 7.0
<#
    Pester 5 tests of New-QcowSnapshot: snapshots QEMU reads and applies.
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

Describe 'New-QcowSnapshot' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'QEMU reads and applies a snapshot that New-QcowSnapshot took' {
        $img = New-QemuImage -Path (Join-Path $dir 'ours.qcow2') -Size 4M -Write 'write -P 0x21 0 192k'
        $at = Get-RawHash $img
        New-QcowSnapshot $img 'ours' | Out-Null
        Invoke-QemuIo $img 'write -P 0x22 64k 64k', 'write -P 0x23 2M 64k'
        Get-RawHash $img -SnapshotName 'ours' | Should -Be $at
        Invoke-QemuImg 'snapshot', '-a', 'ours', $img | Out-Null
        Get-RawHash $img | Should -Be $at
        (Get-QemuCheck $img).ExitCode | Should -Be 0
    }

    It 'snapshots every image of a folder: Get-ChildItem *.qcow2 | New-QcowSnapshot' {
        $folder = New-Item -ItemType Directory -Path (Join-Path $dir 'farm') -Force
        foreach ($i in 1..3) { New-QemuImage -Path (Join-Path $folder.FullName "web-$i.qcow2") -Size 1M | Out-Null }
        $made = @(Get-ChildItem -LiteralPath $folder.FullName -Filter *.qcow2 | New-QcowSnapshot -Name 'nightly')
        $made | Should -HaveCount 3
        $made.Name | Select-Object -Unique | Should -Be 'nightly'
        foreach ($m in $made) { Get-QemuSnapshotNames $m.Path | Should -Be @('nightly') }
        # And all of them go again in one line.
        Get-ChildItem -LiteralPath $folder.FullName -Filter *.qcow2 | Get-QcowSnapshot -Name 'nightly' | Remove-QcowSnapshot -Confirm:$false
        foreach ($m in $made) { Get-QemuSnapshotNames $m.Path | Should -HaveCount 0 }
    }

    It 'a snapshot name already taken is an error and adds nothing' {
        $img = New-QemuImage -Path (Join-Path $dir 'dup.qcow2') -Size 1M
        New-QcowSnapshot $img 'weekly' | Out-Null
        $hash = Get-Hash $img
        New-QcowSnapshot $img 'weekly' -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.InvalidArgument,*'
        $err[0].Exception.Message | Should -BeLike "*named 'weekly' already exists*"
        Get-Hash $img | Should -Be $hash
        Get-QemuSnapshotNames $img | Should -Be @('weekly')
    }
}
