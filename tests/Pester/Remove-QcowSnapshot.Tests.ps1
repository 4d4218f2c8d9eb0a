#Requires -Version 7.0
<#
    Pester 5 tests of Remove-QcowSnapshot: by pipeline, by name and by id, leaking nothing.
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

Describe 'Remove-QcowSnapshot' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'Get-QcowSnapshot | Remove-QcowSnapshot removes every snapshot, ours and QEMU''s, and leaks nothing' {
        $img = New-QemuImage -Path (Join-Path $dir 'many.qcow2') -Size 8M -Write 'write -P 0x41 0 512k'
        New-QcowSnapshot $img 'daily-1' | Out-Null
        Invoke-QemuIo $img 'write -P 0x42 0 128k'
        Invoke-QemuImg 'snapshot', '-c', 'qemu-weekly', $img | Out-Null
        Write-QcowBlock $img -Offset 64KB -Data (New-FilledBytes 70000 0x43)
        New-QcowSnapshot $img 'daily-2' | Out-Null
        Write-QcowBlock $img -Offset 4MB -Data (New-FilledBytes 64KB 0x44)
        $now = Get-RawHash $img
        (Get-QemuSnapshotNames $img) | Should -Be @('daily-1', 'qemu-weekly', 'daily-2')

        Get-QcowSnapshot $img | Remove-QcowSnapshot -Confirm:$false
        Get-QcowSnapshot $img | Should -BeNullOrEmpty
        Get-QemuSnapshotNames $img | Should -HaveCount 0
        Get-RawHash $img | Should -Be $now
        $check = Get-QemuCheck $img
        $check.ExitCode | Should -Be 0 -Because ($check.Messages -join '; ')
        $check.Leaks | Should -Be 0
        $check.Corruptions | Should -Be 0
        $check.AllocatedClusters | Should -Be 9 -Because '512 KiB of data and one 64 KiB cluster at 4 MiB'
        # Nothing is shared any more: every data cluster is counted once and writable in place.
        $clusters = @(Get-QcowCluster $img -Allocated)
        $clusters.Refcount | Select-Object -Unique | Should -Be 1
        $clusters.Copied | Select-Object -Unique | Should -BeTrue
    }

    It 'Remove-QcowSnapshot -Id removes that snapshot only' {
        $img = New-QemuImage -Path (Join-Path $dir 'by-id.qcow2') -Size 1M -Write 'write -P 1 0 64k'
        New-QcowSnapshot $img 'first' | Out-Null
        $second = New-QcowSnapshot $img 'second'
        New-QcowSnapshot $img 'third' | Out-Null
        Remove-QcowSnapshot $img -Id $second.Id -Confirm:$false
        Get-QemuSnapshotNames $img | Should -Be @('first', 'third')
        (Get-QcowSnapshot $img).Id | Should -Be @('1', '3')
        (Get-QemuCheck $img).ExitCode | Should -Be 0
    }
}
