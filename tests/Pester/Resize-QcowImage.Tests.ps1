#Requires -Version 7.0
<#
    Pester 5 tests of Resize-QcowImage: growing, and shrinking only with -AllowShrink.
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

Describe 'Resize-QcowImage' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'grows to an absolute size given as <Label>; data kept, the new space reads as zeros' -ForEach @(
        @{ Label = 'a number'; Size = 3221225472; Expected = 3GB }
        @{ Label = 'the literal 2GB'; Size = 2GB; Expected = 2GB }
        @{ Label = 'the string ''10G'''; Size = '10G'; Expected = 10GB }
        @{ Label = 'the string ''1T'' (the L1 table must grow)'; Size = '1T'; Expected = 1TB }
    ) {
        $img = New-QemuImage -Path (Join-Path $dir 'grow.qcow2') -Size 1G -Write 'write -P 0x11 0 64k', 'write -P 0x12 1023M 1M'
        $info = Resize-QcowImage $img -Size $Size
        $info | Should -BeOfType ([QcowPS.QcowImageInfo])
        $info.VirtualSize | Should -Be $Expected
        $q = Get-QemuImageInfo $img
        $q.'virtual-size' | Should -Be $Expected
        Get-QemuIoPatternMismatch $img '0x11 0 64k', '0x12 1023M 1M', '0 1G 1M' | Should -BeNullOrEmpty
        $check = Get-QemuCheck $img
        $check.ExitCode | Should -Be 0 -Because ($check.Messages -join '; ')
        # QEMU can use the new space.
        Invoke-QemuIo $img "write -P 0x13 $($Expected - 65536) 64k"
        Get-QemuIoPatternMismatch $img "0x13 $($Expected - 65536) 64k" | Should -BeNullOrEmpty
        (Get-QemuCheck $img).ExitCode | Should -Be 0
        Remove-Item -LiteralPath $img
    }

    It '''+1G'' (a relative size) is not accepted: a parameter binding error, the size unchanged' {
        $img = New-QemuImage -Path (Join-Path $dir 'relative.qcow2') -Size 1G
        $hash = Get-Hash $img
        { Resize-QcowImage $img -Size '+1G' -ErrorAction SilentlyContinue } |
            Should -Throw -ExceptionType ([System.Management.Automation.ParameterBindingException]) -ExpectedMessage "*'+1G' is not a size*"
        Get-Hash $img | Should -Be $hash
    }

    It 'a size not a multiple of 512 is rounded up' {
        $img = New-QemuImage -Path (Join-Path $dir 'odd.qcow2') -Size 1M
        (Resize-QcowImage $img -Size 1000000001).VirtualSize | Should -Be 1000000512
        (Get-QemuImageInfo $img).'virtual-size' | Should -Be 1000000512
        (Get-QemuCheck $img).ExitCode | Should -Be 0
    }

    It 'shrinking without -AllowShrink is refused: QcowPS.InvalidArgument, the image unchanged' {
        $img = New-QemuImage -Path (Join-Path $dir 'no-shrink.qcow2') -Size 2G -Write 'write -P 0x21 1500M 64k'
        $hash = Get-Hash $img
        Resize-QcowImage $img -Size 1GB -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.InvalidArgument,*'
        $err[0].Exception.Message | Should -BeLike '*-AllowShrink*'
        Get-Hash $img | Should -Be $hash
        (Get-QemuImageInfo $img).'virtual-size' | Should -Be 2GB
    }

    It '-AllowShrink shrinks: data before the new end kept, clusters past it released' {
        $img = New-QemuImage -Path (Join-Path $dir 'shrink.qcow2') -Size 2G -Write @(
            'write -P 0x31 0 1M', 'write -P 0x32 1023M 1M', 'write -P 0x33 1500M 4M', 'write -P 0x34 2047M 1M')
        $before = Get-QemuCheck $img
        $info = Resize-QcowImage $img -Size '1G' -AllowShrink
        $info.VirtualSize | Should -Be 1GB
        (Get-QemuImageInfo $img).'virtual-size' | Should -Be 1GB
        Get-QemuIoPatternMismatch $img '0x31 0 1M', '0x32 1023M 1M' | Should -BeNullOrEmpty
        $check = Get-QemuCheck $img
        $check.ExitCode | Should -Be 0 -Because ($check.Messages -join '; ')
        $check.AllocatedClusters | Should -Be 32 -Because 'only the 2 MiB of data below 1 GiB stay allocated'
        $before.AllocatedClusters | Should -Be 112
    }

    It 'grow, then shrink back (the L1 table moved by the grow) leaves a clean image' {
        $img = New-QemuImage -Path (Join-Path $dir 'grow-shrink.qcow2') -Size 1G -Write 'write -P 0x41 0 64k'
        Resize-QcowImage $img -Size 2GB | Out-Null
        (Get-QemuCheck $img).ExitCode | Should -Be 0
        Resize-QcowImage $img -Size 512MB -AllowShrink | Out-Null
        $check = Get-QemuCheck $img
        $check.ExitCode | Should -Be 0 -Because ($check.Messages -join '; ')
        (Get-QemuImageInfo $img).'virtual-size' | Should -Be 512MB
        Get-QemuIoPatternMismatch $img '0x41 0 64k' | Should -BeNullOrEmpty
        (Get-QcowInfo $img).VirtualSize | Should -Be 512MB
    }

    It 'an image with snapshots is not shrunk, even with -AllowShrink; it may grow' {
        $img = New-QemuImage -Path (Join-Path $dir 'snapshotted.qcow2') -Size 1G -Write 'write -P 0x51 0 64k'
        Invoke-QemuImg 'snapshot', '-c', 'keep', $img | Out-Null
        $hash = Get-Hash $img
        Resize-QcowImage $img -Size 512MB -AllowShrink -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Get-ErrorIds $err | Should -Be 'QcowPS.InvalidArgument'
        $err[0].Exception.Message | Should -BeLike '*snapshot*'
        Get-Hash $img | Should -Be $hash
        # Growing a v3 image with snapshots is fine; the snapshot keeps its own disk size.
        (Resize-QcowImage $img -Size 2GB).VirtualSize | Should -Be 2GB
        (Get-QemuImageInfo $img).'virtual-size' | Should -Be 2GB
        (Get-QcowSnapshot $img -Name keep).DiskSize | Should -Be 1GB
        (Get-QemuCheck $img).ExitCode | Should -Be 0
        Restore-QcowSnapshot $img -Name keep -Confirm:$false
        (Get-QemuImageInfo $img).'virtual-size' | Should -Be 1GB -Because 'reverting to the snapshot reverts the size, as qemu-img snapshot -a does'
    }

    It 'resizes every image of a folder: Get-ChildItem | Resize-QcowImage' {
        $folder = New-Item -ItemType Directory -Path (Join-Path $dir 'pool') -Force
        foreach ($i in 1..3) { New-QemuImage -Path (Join-Path $folder.FullName "disk-$i.qcow2") -Size 1G | Out-Null }
        $out = @(Get-ChildItem -LiteralPath $folder.FullName -Filter *.qcow2 | Resize-QcowImage -Size 20GB)
        $out | Should -HaveCount 3
        foreach ($o in $out) { (Get-QemuImageInfo $o.Path).'virtual-size' | Should -Be 20GB }
    }
}
