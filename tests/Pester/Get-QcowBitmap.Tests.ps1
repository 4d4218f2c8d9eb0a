#Requires -Version 7.0
<# Pester tests of Get-QcowBitmap: bitmaps QEMU made, read as qemu-img info and qemu-nbd -B report them. #>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = Test-SkipWithoutQemu
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-QcowPSModule | Out-Null
    $ProgressPreference = 'SilentlyContinue'
}

Describe 'Get-QcowBitmap' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        $img = New-QemuImage -Path (Join-Path $dir 'vm.qcow2') -Size 8M
        Invoke-QemuImg 'bitmap', '--add', '-g', '4096', $img, 'daily'
        Invoke-QemuImg 'bitmap', '--add', '-g', '1M', $img, 'weekly'
        Invoke-QemuIo $img 'write -P 1 100k 3k', 'write -P 2 5M 70k'
        Invoke-QemuImg 'bitmap', '--disable', $img, 'weekly'
        Invoke-QemuIo $img 'write -P 3 7M 512'
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'lists each bitmap as qemu-img info does' {
        $bitmaps = Get-QcowBitmap $img
        $bitmaps.Name | Should -Be @('daily', 'weekly')
        $qemu = Get-QemuBitmapInfo $img
        foreach ($b in $bitmaps) {
            $q = $qemu | Where-Object name -eq $b.Name
            $b.Granularity | Should -Be $q.granularity
            $b.Enabled | Should -Be ($q.flags -contains 'auto')
            $b.InUse | Should -BeFalse
            $b.Path | Should -Be $img
        }
        ($bitmaps | Where-Object Name -eq 'daily').DirtyBytes | Should -Be (4096 + 18 * 4096 + 4096)
    }

    It '-Extent gives the runs qemu-nbd -B exports, for <_>' -ForEach 'daily', 'weekly' {
        $ours = ConvertTo-BitmapRunText (Get-QcowBitmap $img -Name $_ -Extent)
        $ours | Should -Be (Get-QemuBitmapMap $img $_)
    }

    It 'filters by wildcard and reports a missing name as QcowPS.BitmapNotFound' {
        (Get-QcowBitmap $img -Name 'w*').Name | Should -Be 'weekly'
        Get-QcowBitmap $img -Name 'nope' -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.BitmapNotFound*'
    }

    It 'takes images from Get-ChildItem' {
        (Get-ChildItem -LiteralPath $dir -Filter *.qcow2 | Get-QcowBitmap).Count | Should -Be 2
    }

    It 'a bitmap a killed writer left in use is shown stale, its runs refused with QcowPS.BitmapInUse' {
        $stale = New-QemuImage -Path (Join-Path $dir 'stale.qcow2') -Size 1M
        Invoke-QemuImg 'bitmap', '--add', $stale, 'b0' | Out-Null
        $holder = Start-QemuIoHolder $stale   # QEMU marks the bitmap in use while it has the image open
        try { $holder.Kill(); $holder.WaitForExit() } finally { Stop-QemuIoHolder $holder }
        (Get-QemuBitmapInfo $stale).flags | Should -Contain 'in-use'
        $b = Get-QcowBitmap $stale
        $b.InUse | Should -BeTrue
        $b.DirtyBytes | Should -BeNullOrEmpty
        (Get-QcowBitmap $stale | Out-String) | Should -BeLike '*stale*'
        Get-QcowBitmap $stale -Extent -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.BitmapInUse*'
        Remove-QcowBitmap $stale -Name 'b0'
        Get-QcowBitmap $stale | Should -BeNullOrEmpty
    }

    It 'the default view fits 120 columns' {
        $lines = (Get-QcowBitmap $img | Out-String -Width 200) -split "`n"
        ($lines | Measure-Object -Property Length -Maximum).Maximum | Should -BeLessOrEqual 120
    }
}
