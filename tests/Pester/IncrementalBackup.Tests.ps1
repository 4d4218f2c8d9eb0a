#Requires -Version 7.0
<#
    The incremental backup runbook of about_QcowPS, as a user runs it: full backup, New-QcowBitmap,
    writes, Convert-QcowImage -Bitmap over the previous backup, Clear-QcowBitmap, again; each restored
    point equals the source at that point (qemu-img compare), and each increment stores less than the
    bitmap marked dirty and more than nothing (qemu-img map counts it). Also Convert-QcowImage -Bitmaps.
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

Describe 'Incremental backup runbook' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'full backup and two increments each restore the source as it was' {
        $vm = New-QemuImage -Path (Join-Path $dir 'vm.qcow2') -Size 32M -Write 'write -P 1 0 4M', 'write -P 2 20M 2M'
        Convert-QcowImage $vm -Destination (Join-Path $dir 'full.qcow2') | Out-Null
        New-QcowBitmap $vm -Name 'backup' | Out-Null
        $previous = 'full.qcow2'
        $random = [Random]::new(12)
        foreach ($round in 1, 2) {
            foreach ($i in 1..10) {
                $offset = $random.Next(0, 30MB)
                Write-QcowBlock $vm -Offset $offset -Data (New-RandomBytes ($random.Next(1, 100KB)) $round$i)
            }
            $point = Join-Path $dir "point$round.qcow2"
            Copy-Item $vm $point
            $dirty = (Get-QcowBitmap $vm -Name 'backup').DirtyBytes
            $increment = Join-Path $dir "inc$round.qcow2"
            Convert-QcowImage $vm -Destination $increment -Bitmap 'backup' -BackingFile $previous | Out-Null
            Clear-QcowBitmap $vm -Name 'backup'
            (Get-QcowBitmap $vm -Name 'backup').DirtyBytes | Should -Be 0

            (Get-QemuCheck $increment).Corruptions | Should -Be 0
            & qemu-img compare -q $point $increment
            $LASTEXITCODE | Should -Be 0 -Because "restore point $round must equal the source then"
            $stored = (Get-QemuMap $increment | Where-Object { $_.depth -eq 0 -and $_.data } | Measure-Object -Property length -Sum).Sum
            $stored | Should -BeGreaterThan 0
            $stored | Should -BeLessOrEqual $dirty -Because 'an increment holds only what the bitmap marks dirty'
            $restored = Join-Path $dir "restored$round.qcow2"
            Convert-QcowImage $increment -Destination $restored | Out-Null
            & qemu-img compare -q $point $restored
            $LASTEXITCODE | Should -Be 0
            $previous = "inc$round.qcow2"
        }
    }

    It '-Bitmap without -BackingFile is refused before anything is written' {
        $vm = New-QemuImage -Path (Join-Path $dir 'nob.qcow2') -Size 1M
        New-QcowBitmap $vm -Name 'b' | Out-Null
        { Convert-QcowImage $vm -Destination (Join-Path $dir 'nob-inc.qcow2') -Bitmap 'b' -ErrorAction Stop } |
            Should -Throw -ErrorId 'QcowPS.ConflictingParameters*'
        Join-Path $dir 'nob-inc.qcow2' | Should -Not -Exist
    }

    It '-Bitmaps copies the bitmaps as qemu-img convert --bitmaps does' {
        $vm = New-QemuImage -Path (Join-Path $dir 'copy.qcow2') -Size 4M
        New-QcowBitmap $vm -Name 'a' -Granularity 4KB | Out-Null
        Write-QcowBlock $vm -Offset 100KB -Data (New-FilledBytes 5000 7)
        $ours = Join-Path $dir 'ours.qcow2'
        $theirs = Join-Path $dir 'theirs.qcow2'
        Convert-QcowImage $vm -Destination $ours -Bitmaps | Out-Null
        Invoke-QemuImg 'convert', '-f', 'qcow2', '-O', 'qcow2', '--bitmaps', $vm, $theirs | Out-Null
        (Get-QemuBitmapInfo $ours).name | Should -Be 'a'
        Get-QemuBitmapMap $ours 'a' | Should -Be (Get-QemuBitmapMap $theirs 'a')
    }
}
