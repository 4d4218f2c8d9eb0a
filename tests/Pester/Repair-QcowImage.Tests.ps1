#Requires -Version 7.0
<#
    Pester 5 tests of Repair-QcowImage against qemu-img check -r leaks / -r all, on images damaged on
    purpose (Get-BrokenImageCases, Invoke-Break in TestHelpers.psm1).
    Images are made at run time in a temporary folder; QEMU's tools are the referee (TestHelpers.psm1).
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = Test-SkipWithoutQemu

    $BrokenCases = Get-BrokenImageCases
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-QcowPSModule | Out-Null
    $ProgressPreference = 'SilentlyContinue'
}

Describe 'Repair-QcowImage against qemu-img check' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It '<Name>: Repair-QcowImage -All fixes what qemu-img check -r all fixes, and the guest data agree' -ForEach $BrokenCases {
        $img = New-VictimImage $dir "repair-all-$Break.qcow2" -Snapshot:($Break -eq 'SharedRefcountOne')
        Invoke-Break $img $Break
        $reference = Join-Path $dir "repair-all-$Break.by-qemu.qcow2"
        Copy-Item -LiteralPath $img -Destination $reference
        $q = Get-QemuCheck $reference -Repair all

        $r = Repair-QcowImage $img -All -Confirm:$false
        $r | Should -BeOfType ([QcowPS.QcowCheckResult])
        $r.Path | Should -Be $img
        $r.CorruptionsFixed | Should -Be $q.CorruptionsFixed
        $r.LeaksFixed | Should -Be $q.LeaksFixed
        $r.Corruptions | Should -Be 0
        $r.Leaks | Should -Be 0
        $after = Get-QemuCheck $img
        $after.ExitCode | Should -Be 0 -Because ($after.Messages -join '; ')
        Test-QcowImage $img | Should -BeTrue
        $ours = Export-QemuRaw -Path $img -Destination (Join-Path $dir "repair-all-$Break.raw")
        $theirs = Export-QemuRaw -Path $reference -Destination (Join-Path $dir "repair-all-$Break.by-qemu.raw")
        (Get-FileHash -LiteralPath $ours).Hash | Should -Be (Get-FileHash -LiteralPath $theirs).Hash
        Get-QemuIoPatternMismatch $img '0x11 64k 64k' | Should -BeNullOrEmpty -Because 'undamaged data survives the repair'
    }

    It '<Name>: Repair-QcowImage (-Leaks, the default) fixes the leaks as qemu-img check -r leaks does' -ForEach $BrokenCases {
        $img = New-VictimImage $dir "repair-leaks-$Break.qcow2" -Snapshot:($Break -eq 'SharedRefcountOne')
        Invoke-Break $img $Break
        $reference = Join-Path $dir "repair-leaks-$Break.by-qemu.qcow2"
        Copy-Item -LiteralPath $img -Destination $reference
        $found = Get-QemuCheck $img
        $q = Get-QemuCheck $reference -Repair leaks

        $r = Repair-QcowImage $img -Confirm:$false
        if ($q.ExitCode -eq 1) {
            # qemu-img refuses to fix only leaks when the refcount structures need rebuilding ('ERROR need to
            # rebuild refcount structures'); the corruptions must then still be reported, and -All fixes them.
            $q.Messages | Should -Contain 'ERROR need to rebuild refcount structures'
            $r.IsConsistent | Should -BeFalse
            $r.Corruptions | Should -Be $found.Corruptions
            $r.CorruptionsFixed | Should -Be 0
            (Get-QemuCheck $img).Corruptions | Should -Be $found.Corruptions
            (Repair-QcowImage $img -All -Confirm:$false).IsConsistent | Should -BeTrue
            (Get-QemuCheck $img).ExitCode | Should -Be 0
            return
        }
        $r.LeaksFixed | Should -Be $q.LeaksFixed
        $r.CorruptionsFixed | Should -Be 0
        $r.Leaks | Should -Be 0
        $after = Get-QemuCheck $img
        $afterReference = Get-QemuCheck $reference
        $after.Leaks | Should -Be 0
        $after.Corruptions | Should -Be $afterReference.Corruptions -Because '-Leaks leaves corruptions, as qemu-img check -r leaks does'
        if ($Kind -eq 'leak') {
            $after.ExitCode | Should -Be 0
            (Repair-QcowImage $img -Leaks).LeaksFixed | Should -Be 0 -Because 'nothing is left to fix'
        }
    }

    It 'runbook: find the damaged images of a folder and repair them in one pipeline' {
        $farm = New-Item -ItemType Directory -Path (Join-Path $dir 'farm') -Force
        $good = New-QemuImage -Path (Join-Path $farm.FullName 'good.qcow2') -Size 1M -Write 'write -P 1 0 64k'
        $leaky = New-QemuImage -Path (Join-Path $farm.FullName 'leaky.qcow2') -Size 1M -Write 'write -P 1 0 64k'
        Invoke-Break $leaky 'HeaderRefcount'
        $corrupt = New-QemuImage -Path (Join-Path $farm.FullName 'corrupt.qcow2') -Size 1M -Write 'write -P 1 0 64k'
        Invoke-Break $corrupt 'DataRefcountZero'
        $goodHash = Get-Hash $good

        $bad = @(Get-ChildItem -LiteralPath $farm.FullName -Filter *.qcow2 | Test-QcowImage -Detailed |
            Where-Object { -not $_.IsConsistent -or $_.Leaks -gt 0 } | Sort-Object Path)
        $bad.Path | Should -Be @($corrupt, $leaky)
        # Streamed straight from Test-QcowImage into Repair-QcowImage, as about_QcowPS shows it.
        $fixed = @(Get-ChildItem -LiteralPath $farm.FullName -Filter *.qcow2 | Test-QcowImage -Detailed |
            Where-Object { -not $_.IsConsistent -or $_.Leaks -gt 0 } |
            Repair-QcowImage -All -Confirm:$false -ErrorVariable err)
        $err | Should -HaveCount 0
        $fixed | Should -HaveCount 2
        ($fixed.Path | Sort-Object) | Should -Be @($corrupt, $leaky)
        @(Get-ChildItem -LiteralPath $farm.FullName -Filter *.qcow2 | Test-QcowImage) | Should -Be @($true, $true, $true)
        foreach ($p in $good, $leaky, $corrupt) { (Get-QemuCheck $p).ExitCode | Should -Be 0 }
        Get-Hash $good | Should -Be $goodHash
    }

    It 'Repair-QcowImage on a clean image changes nothing and reports nothing fixed' {
        $img = New-VictimImage $dir 'already-clean.qcow2' -Snapshot
        $hash = Get-Hash $img
        foreach ($mode in @{ Leaks = $true }, @{ All = $true }) {
            $r = Repair-QcowImage $img @mode -Confirm:$false
            $r.LeaksFixed + $r.CorruptionsFixed | Should -Be 0
            $r.IsConsistent | Should -BeTrue
        }
        Get-Hash $img | Should -Be $hash
    }

    It '-Leaks and -All together are a terminating QcowPS.ConflictingParameters' {
        $img = New-VictimImage $dir 'conflict.qcow2'
        Invoke-Break $img 'HeaderRefcount'
        $hash = Get-Hash $img
        { Repair-QcowImage $img -Leaks -All -Confirm:$false -ErrorAction SilentlyContinue } | Should -Throw -ErrorId 'QcowPS.ConflictingParameters,*'
        Get-Hash $img | Should -Be $hash
    }
}
