#Requires -Version 7.0
<#
    Pester 5 tests of Restore-QcowSnapshot: rolling back to snapshots ours or QEMU's.
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

Describe 'Restore-QcowSnapshot' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'runbook: snapshot before patching, patch, roll back with Get-QcowSnapshot | Restore-QcowSnapshot' {
        $img = New-QemuImage -Path (Join-Path $dir 'app.qcow2') -Size 16M -Write 'write -P 0x11 0 1M', 'write -P 0x12 8M 64k'
        $before = Get-RawHash $img
        $started = [DateTime]::UtcNow

        $snap = New-QcowSnapshot -Path $img -Name 'pre-patch'
        $snap | Should -BeOfType ([QcowPS.QcowSnapshot])
        $snap.Path | Should -Be $img
        $snap.Name | Should -Be 'pre-patch'
        $snap.Id | Should -Be '1'
        $snap.DiskSize | Should -Be 16MB
        $snap.VmStateSize | Should -Be 0
        [Math]::Abs(($snap.Date - $started).TotalMinutes) | Should -BeLessThan 5
        $q = (Get-QemuImageInfo $img).snapshots
        @($q).Count | Should -Be 1
        $q[0].name | Should -Be 'pre-patch'
        $q[0].id | Should -Be '1'

        # The patch: new data, a zeroed range, and growth into unallocated space.
        Write-QcowBlock $img -Offset 512KB -Data (New-RandomBytes -Length 300000 -Seed 9)
        Write-QcowBlock $img -Offset 8MB -Zero -Length 64KB
        Write-QcowBlock $img -Offset 12MB -Data (New-FilledBytes 4096 0x13)
        Get-RawHash $img | Should -Not -Be $before

        $out = Get-QcowSnapshot $img -Name 'pre-patch' | Restore-QcowSnapshot -Confirm:$false
        $out | Should -BeNullOrEmpty
        Get-RawHash $img | Should -Be $before
        Get-QemuSnapshotNames $img | Should -Be @('pre-patch') -Because 'restoring keeps the snapshot'
        $check = Get-QemuCheck $img
        $check.ExitCode | Should -Be 0 -Because ($check.Messages -join '; ')
    }

    It 'a snapshot QEMU took (qemu-img snapshot -c) is restored, then removed, by ours' {
        $img = New-QemuImage -Path (Join-Path $dir 'theirs.qcow2') -Size 4M -Write 'write -P 0x31 0 128k'
        Invoke-QemuImg 'snapshot', '-c', 'qemu-made', $img | Out-Null
        $at = Get-RawHash $img
        Invoke-QemuIo $img 'write -P 0x32 0 64k', 'write -z 64k 64k', 'write -P 0x33 3M 64k'
        Restore-QcowSnapshot $img -Name 'qemu-made' -Confirm:$false
        Get-RawHash $img | Should -Be $at
        (Get-QemuCheck $img).ExitCode | Should -Be 0
        Remove-QcowSnapshot $img -Name 'qemu-made' -Confirm:$false
        Get-QemuSnapshotNames $img | Should -HaveCount 0
        Get-RawHash $img | Should -Be $at
        $check = Get-QemuCheck $img
        $check.ExitCode | Should -Be 0
        $check.Leaks | Should -Be 0
        $check.AllocatedClusters | Should -Be 2
    }
}
