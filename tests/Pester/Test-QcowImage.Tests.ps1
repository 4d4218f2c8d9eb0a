#Requires -Version 7.0
<#
    Pester 5 tests of Test-QcowImage against qemu-img check, on clean images and on images damaged on
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

Describe 'Test-QcowImage against qemu-img check' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'a clean image: Test-QcowImage is $true, -Detailed agrees with qemu-img check field by field' {
        $img = New-VictimImage $dir 'clean.qcow2' -Snapshot
        $packed = Join-Path $dir 'clean-compressed.qcow2'
        Invoke-QemuImg 'convert', '-c', '-O', 'qcow2', $img, $packed | Out-Null
        foreach ($path in $img, $packed) {
            $hash = Get-Hash $path
            Test-QcowImage $path | Should -BeExactly $true
            $r = Test-QcowImage $path -Detailed
            $q = Get-QemuCheck $path
            $q.ExitCode | Should -Be 0
            $r | Should -BeOfType ([QcowPS.QcowCheckResult])
            $r.Path | Should -Be $path
            $r.IsConsistent | Should -BeTrue
            $r.Corruptions | Should -Be 0
            $r.Leaks | Should -Be 0
            $r.CheckErrors | Should -Be 0
            $r.AllocatedClusters | Should -Be $q.AllocatedClusters
            $r.TotalClusters | Should -Be $q.TotalClusters
            $r.FragmentedClusters | Should -Be $q.FragmentedClusters
            $r.CompressedClusters | Should -Be $q.CompressedClusters
            $r.ImageEndOffset | Should -Be $q.ImageEndOffset
            $r.Problems | Should -HaveCount 0
            Get-Hash $path | Should -Be $hash -Because 'checking only reads'
        }
        (Test-QcowImage $packed -Detailed).CompressedClusters | Should -BeGreaterThan 0
    }

    It '<Name>: Test-QcowImage is $false, and -Detailed reports what qemu-img check reports' -ForEach $BrokenCases {
        $img = New-VictimImage $dir "broken-$Break.qcow2" -Snapshot:($Break -eq 'SharedRefcountOne')
        Invoke-Break $img $Break
        $q = Get-QemuCheck $img
        # The damage is what it is meant to be.
        if ($Kind -eq 'leak') {
            $q.ExitCode | Should -Be 3
            $q.Corruptions | Should -Be 0
            $q.Leaks | Should -BeGreaterThan 0
        } else {
            $q.ExitCode | Should -Be 2
            $q.Corruptions | Should -BeGreaterThan 0
        }

        $hash = Get-Hash $img
        Test-QcowImage $img | Should -BeExactly $false
        $r = Test-QcowImage $img -Detailed
        $r.IsConsistent | Should -Be ($Kind -eq 'leak')
        $r.Corruptions | Should -Be $q.Corruptions
        $r.Leaks | Should -Be $q.Leaks
        $r.CheckErrors | Should -Be $q.CheckErrors
        $r.AllocatedClusters | Should -Be $q.AllocatedClusters
        $r.TotalClusters | Should -Be $q.TotalClusters
        $r.FragmentedClusters | Should -Be $q.FragmentedClusters
        $r.ImageEndOffset | Should -Be $q.ImageEndOffset
        @($r.Problems) | Should -Be $q.Messages
        Get-Hash $img | Should -Be $hash -Because 'Test-QcowImage never writes'
    }
}
