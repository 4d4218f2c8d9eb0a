#Requires -Version 7.0
<#
    Pester 5 tests of Get-QcowSnapshot, compared with qemu-img snapshot -l / info.
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

Describe 'Get-QcowSnapshot' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        $img = New-QemuImage -Path (Join-Path $dir 'app.qcow2') -Size 4M -Write 'write -P 0x11 0 128k'
        Invoke-QemuImg 'snapshot', '-c', 'before-upgrade', $img | Out-Null
        Invoke-QemuIo $img 'write -P 0x22 64k 64k'
        Invoke-QemuImg 'snapshot', '-c', 'after-upgrade', $img | Out-Null
        New-QemuImage -Path (Join-Path $dir 'nosnap.qcow2') -Size 1M | Out-Null
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'lists both snapshots as qemu-img info does' {
        $q = (Get-QemuImageInfo $img).snapshots
        $s = @(Get-QcowSnapshot $img)
        $s | Should -HaveCount 2
        $s.Id | Should -Be $q.id
        $s.Name | Should -Be @('before-upgrade', 'after-upgrade')
        $s.Name | Should -Be $q.name
        $s.VmStateSize | Should -Be $q.'vm-state-size'
        $s.DiskSize | Should -Be @(4MB, 4MB)
        $s.Path | Should -Be @($img, $img)
        for ($k = 0; $k -lt 2; $k++) {
            $expected = [DateTimeOffset]::FromUnixTimeSeconds($q[$k].'date-sec').UtcDateTime.AddTicks([long]($q[$k].'date-nsec' / 100))
            [Math]::Abs(($s[$k].Date - $expected).TotalSeconds) | Should -BeLessThan 1
            $s[$k].VmClock | Should -Be ([TimeSpan]::Zero)
            $s[$k] | Should -BeOfType ([QcowPS.QcowSnapshot])
        }
    }

    It '-Name <Pattern> selects <Expected>' -ForEach @(
        @{ Pattern = @('*-upgrade'); Expected = @('before-upgrade', 'after-upgrade') }
        @{ Pattern = @('before*'); Expected = @('before-upgrade') }
        @{ Pattern = @('a?ter-upgrade'); Expected = @('after-upgrade') }
        @{ Pattern = @('after-upgrade', 'before*'); Expected = @('before-upgrade', 'after-upgrade') }
    ) {
        (Get-QcowSnapshot $img -Name $Pattern).Name | Should -Be $Expected
    }

    It '-Id selects by ID' {
        $s = @(Get-QcowSnapshot $img -Id 2)
        $s | Should -HaveCount 1
        $s[0].Name | Should -Be 'after-upgrade'
        (Get-QcowSnapshot $img -Id 1, 2).Name | Should -Be @('before-upgrade', 'after-upgrade')
    }

    It 'a -Name without wildcards that does not exist is QcowPS.SnapshotNotFound' {
        $out = Get-QcowSnapshot $img -Name 'mid-upgrade' -ErrorVariable err -ErrorAction SilentlyContinue
        $out | Should -BeNullOrEmpty
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.SnapshotNotFound*'
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        { Get-QcowSnapshot $img -Name 'mid-upgrade' -ErrorAction Stop } | Should -Throw -ErrorId 'QcowPS.SnapshotNotFound,*'
    }

    It 'a missing -Id is QcowPS.SnapshotNotFound' {
        Get-QcowSnapshot $img -Id 99 -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.SnapshotNotFound*'
    }

    It 'a wildcard -Name that matches nothing returns nothing and no error' {
        Get-QcowSnapshot $img -Name 'nightly-*' -ErrorVariable err | Should -BeNullOrEmpty
        $err | Should -HaveCount 0
    }

    It 'Get-ChildItem *.qcow2 | Get-QcowSnapshot lists the snapshots of every image' {
        Push-Location -LiteralPath $dir
        try {
            $all = @(Get-ChildItem *.qcow2 | Get-QcowSnapshot -ErrorVariable err)
        } finally {
            Pop-Location
        }
        $err | Should -HaveCount 0
        $all | Should -HaveCount 2
        ($all.Path | Select-Object -Unique) | Should -Be $img
    }

    It '-Name matches names case-insensitively without also reporting SnapshotNotFound' {
        # The filter and the existence check agree: one snapshot out, no SnapshotNotFound.
        $out = @(Get-QcowSnapshot $img -Name 'BEFORE-UPGRADE' -ErrorVariable err -ErrorAction SilentlyContinue)
        $err | Should -HaveCount 0
        $out | Should -HaveCount 1
        $out[0].Name | Should -BeExactly 'before-upgrade' 
    }
}
