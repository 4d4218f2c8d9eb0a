#Requires -Version 7.0
<#
    -ForceShare (qemu-img -U): the read cmdlets refuse an image a running QEMU holds, and read it with
    -ForceShare; the writing cmdlets have no such switch and are always refused.
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = (Test-SkipWithoutQemu) -or -not $IsLinux
    Import-QcowPSModule | Out-Null
}

Describe 'Reading an image a running qemu-io holds' -Skip:$SkipImages {
    BeforeAll {
        Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
        Assert-QemuTools
        Import-QcowPSModule | Out-Null
        $dir = New-QcowTestFolder
        $img = New-QemuImage -Path (Join-Path $dir 'busy.qcow2') -Size 4M -Write 'write -P 0x3c 0 64k'
        $copy = Join-Path $dir 'copy.qcow2'
        Invoke-QemuImg 'convert', '-O', 'qcow2', $img, $copy | Out-Null
        $holder = Start-QemuIoHolder $img
    }
    AfterAll {
        Stop-QemuIoHolder $holder
        Remove-QcowTestFolder $dir
    }

    It '<Name> is refused with QcowPS.ImageInUse, and works with -ForceShare' -ForEach @(
        @{ Name = 'Get-QcowInfo'; Run = { param($p, $x) Get-QcowInfo $p @x } }
        @{ Name = 'Get-QcowSnapshot'; Run = { param($p, $x) Get-QcowSnapshot $p @x; 'done' } }
        @{ Name = 'Read-QcowBlock'; Run = { param($p, $x) Read-QcowBlock $p 0 512 -Raw @x } }
        @{ Name = 'Get-QcowCluster'; Run = { param($p, $x) Get-QcowCluster $p -Allocated @x } }
        @{ Name = 'Get-QcowTable'; Run = { param($p, $x) Get-QcowTable $p L1 -NonZero @x } }
        @{ Name = 'Test-QcowImage'; Run = { param($p, $x) Test-QcowImage $p @x } }
        @{ Name = 'Compare-QcowImage'; Run = { param($p, $x) Compare-QcowImage $p $copy -Quiet @x } }
    ) {
        $all = @(& $Run $img @{} 2>&1)
        $err = @($all | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.ImageInUse,*'
        $err[0].CategoryInfo.Category | Should -Be 'ResourceBusy'

        $shared = @(& $Run $img @{ ForceShare = $true } 2>&1)
        @($shared | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] }) | Should -HaveCount 0
        $shared.Count | Should -BeGreaterThan 0
    }

    It 'what -ForceShare reads is the image''s data' {
        $bytes = Read-QcowBlock $img 0 16 -Raw -ForceShare
        $bytes | Should -Be (@(0x3c) * 16)
        (Get-QcowInfo $img -ForceShare).VirtualSize | Should -Be 4MB
        Compare-QcowImage $img $copy -Quiet -ForceShare | Should -BeTrue
    }

    It 'Convert-QcowImage -ForceShare copies an image in use' {
        $out = Join-Path $dir 'snapshot-of-busy.qcow2'
        Convert-QcowImage $img -Destination $out -ForceShare | Out-Null
        Invoke-QemuImg 'compare', $copy, $out | Out-Null
        $LASTEXITCODE | Should -Be 0
    }

    It 'the writing cmdlets have no -ForceShare' -ForEach @(
        @{ Cmdlet = 'Write-QcowBlock' }, @{ Cmdlet = 'New-QcowSnapshot' }, @{ Cmdlet = 'Resize-QcowImage' }, @{ Cmdlet = 'Repair-QcowImage' }
    ) {
        (Get-Command $Cmdlet).Parameters.ContainsKey('ForceShare') | Should -BeFalse
    }
}
