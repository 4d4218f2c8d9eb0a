#Requires -Version 7.0
<#
    Pester 5 tests of ShouldProcess: every changing cmdlet honours -WhatIf, -Confirm:$false and QEMU's
    lock; the snapshot cmdlets that cannot be undone ask first.
    Images are made at run time in a temporary folder; QEMU's tools are the referee (TestHelpers.psm1).
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = Test-SkipWithoutQemu

    # Every cmdlet that changes a file, with an image prepared so that the change is real.
    # Run takes the image path and extra parameters (-WhatIf, -Confirm:$false) to splat;
    # Verify checks, with QEMU's tools, that the change was made.
    $ChangingCases = @(
        @{ Name = 'New-QcowImage -Force'; Prep = 'plain'
            Run = { param($p, $x) New-QcowImage -Path $p -Size 2MB -Force @x }
            Verify = { param($p) (Get-QemuImageInfo $p).'virtual-size' | Should -Be 2MB } }
        @{ Name = 'Write-QcowBlock -Data'; Prep = 'plain'
            Run = { param($p, $x) Write-QcowBlock -Path $p -Offset 4096 -Data (New-FilledBytes 100 0x44) @x }
            Verify = { param($p) Get-QemuIoPatternMismatch $p '0x44 4096 100', '0x22 0 4096' | Should -BeNullOrEmpty } }
        @{ Name = 'Write-QcowBlock -Zero'; Prep = 'plain'
            Run = { param($p, $x) Write-QcowBlock -Path $p -Offset 0 -Zero -Length 64KB @x }
            Verify = { param($p) Get-QemuIoPatternMismatch $p '0 0 64k', '0x11 64k 64k' | Should -BeNullOrEmpty } }
        @{ Name = 'Write-QcowBlock -Discard'; Prep = 'plain'
            Run = { param($p, $x) Write-QcowBlock -Path $p -Offset 0 -Discard -Length 64KB @x }
            Verify = { param($p) (Get-QemuMap $p)[0].data | Should -BeFalse } }
        @{ Name = 'Write-QcowBlock -InputFile'; Prep = 'plain'
            Run = { param($p, $x) Write-QcowBlock -Path $p -Offset 1MB -InputFile (Join-Path (Split-Path $p) 'input.bin') @x }
            Verify = { param($p) Get-QemuIoPatternMismatch $p '0x55 1M 70000' | Should -BeNullOrEmpty } }
        @{ Name = 'New-QcowSnapshot'; Prep = 'plain'
            Run = { param($p, $x) New-QcowSnapshot -Path $p -Name 'extra' @x }
            Verify = { param($p) (Get-QemuImageInfo $p).snapshots.name | Should -Be @('snap', 'extra') } }
        @{ Name = 'Remove-QcowSnapshot'; Prep = 'plain'
            Run = { param($p, $x) Remove-QcowSnapshot -Path $p -Name 'snap' @x }
            Verify = { param($p) (Get-QemuImageInfo $p).PSObject.Properties.Name | Should -Not -Contain 'snapshots' } }
        @{ Name = 'Restore-QcowSnapshot'; Prep = 'plain'
            Run = { param($p, $x) Restore-QcowSnapshot -Path $p -Name 'snap' @x }
            Verify = { param($p) Get-QemuIoPatternMismatch $p '0x11 0 128k' | Should -BeNullOrEmpty } }
        @{ Name = 'Resize-QcowImage (grow)'; Prep = 'plain'
            Run = { param($p, $x) Resize-QcowImage -Path $p -Size 8MB @x }
            Verify = { param($p) (Get-QemuImageInfo $p).'virtual-size' | Should -Be 8MB } }
        @{ Name = 'Resize-QcowImage -AllowShrink'; Prep = 'nosnap'
            Run = { param($p, $x) Resize-QcowImage -Path $p -Size 2MB -AllowShrink @x }
            Verify = { param($p) (Get-QemuImageInfo $p).'virtual-size' | Should -Be 2MB } }
        @{ Name = 'Repair-QcowImage -Leaks'; Prep = 'leak'
            Run = { param($p, $x) Repair-QcowImage -Path $p -Leaks @x }
            Verify = { param($p) (Get-QemuCheck $p).Leaks | Should -Be 0 } }
        @{ Name = 'Repair-QcowImage -All'; Prep = 'corrupt'
            Run = { param($p, $x) Repair-QcowImage -Path $p -All @x }
            Verify = { param($p) (Get-QemuCheck $p).Corruptions | Should -Be 0 } }
    )
    # The cases that open an existing image for writing (all but New-QcowImage).
    $OpeningCases = @($ChangingCases | Where-Object { $_.Name -ne 'New-QcowImage -Force' })
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-QcowPSModule | Out-Null
    $ProgressPreference = 'SilentlyContinue'
}

Describe 'Every changing cmdlet honours -WhatIf, -Confirm:$false and QEMU''s lock' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        [IO.File]::WriteAllBytes((Join-Path $dir 'input.bin'), (New-FilledBytes 70000 0x55))

        # 4 MiB: 0x11 in 0-128k, snapshot 'snap', then 0x22 in 0-64k. 'nosnap' stops before the snapshot.
        # -Dirty: lazy refcounts, and a QEMU that died after a write (the dirty bit is set).
        # Then 'leak' raises the header's refcount; 'corrupt' counts the data cluster at 0 as 0.
        function New-CaseImage([string]$Prep, [switch]$Dirty) {
            $path = Join-Path $dir ('case-' + [Guid]::NewGuid().ToString('N').Substring(0, 8) + '.qcow2')
            $option = if ($Dirty) { @{ lazy_refcounts = 'on' } } else { $null }
            New-QemuImage -Path $path -Size 4M -Option $option -Write 'write -P 0x11 0 128k' | Out-Null
            if ($Prep -ne 'nosnap') {
                Invoke-QemuImg 'snapshot', '-c', 'snap', $path | Out-Null
                Invoke-QemuIo $path 'write -P 0x22 0 64k'
            }
            if ($Dirty) {
                & qemu-io -f qcow2 -c 'write -P 0x66 2M 64k' -c 'abort' $path *> $null
                if (-not (Get-QemuImageInfo $path).'dirty-flag') { throw "'$path' should be dirty" }
            }
            if ($Prep -eq 'leak') {
                Set-FileBigEndian -Path $path -Offset (Get-RefcountEntry $path 0).Offset -Value 2 -Size 2
            }
            if ($Prep -eq 'corrupt') {
                $hostOffset = (Get-QcowCluster $path -Offset 0 -Length 1).HostOffset
                Set-FileBigEndian -Path $path -Offset (Get-RefcountEntry $path $hostOffset).Offset -Value 0 -Size 2
            }
            return $path
        }
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It '<Name> -WhatIf leaves the file byte-identical' -ForEach $ChangingCases {
        $img = New-CaseImage $Prep
        $hash = Get-Hash $img
        $out = & $Run $img @{ WhatIf = $true }
        $out | Should -BeNullOrEmpty
        Get-Hash $img | Should -Be $hash
    }

    It '<Name> -WhatIf leaves a dirty lazy-refcounts image byte-identical' -ForEach $OpeningCases {
        $img = New-CaseImage $Prep -Dirty
        $hash = Get-Hash $img
        & $Run $img @{ WhatIf = $true } | Out-Null
        Get-Hash $img | Should -Be $hash -Because '-WhatIf must not write, not even the refcount rebuild a dirty image needs'
    }

    It '<Name> -Confirm:$false does the change without asking, even with $ConfirmPreference = ''Low''' -ForEach $ChangingCases {
        $img = New-CaseImage $Prep
        $hash = Get-Hash $img
        $ConfirmPreference = 'Low'
        & $Run $img @{ Confirm = $false } | Out-Null
        Get-Hash $img | Should -Not -Be $hash
        & $Verify $img
        $check = Get-QemuCheck $img
        $check.ExitCode | Should -Be 0 -Because ($check.Messages -join '; ')
    }

    It '<Name> refuses an image a running qemu-io holds: QcowPS.ImageInUse, file unchanged' -Skip:(-not $IsLinux) -ForEach $ChangingCases {
        $img = New-CaseImage $Prep
        $qemu = Start-QemuIoHolder $img
        try {
            $hash = Get-Hash $img
            $all = @(& $Run $img @{ Confirm = $false } 2>&1)
            $err = @($all | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })
            Get-ErrorIds $err | Should -Be 'QcowPS.ImageInUse'
            $err[0].CategoryInfo.Category | Should -Be 'ResourceBusy'
            Get-Hash $img | Should -Be $hash
        } finally {
            Stop-QemuIoHolder $qemu
        }
    }
}

Describe 'Confirmation of the snapshot cmdlets' {
    It 'Restore- and Remove-QcowSnapshot ask for confirmation by default (ConfirmImpact High: neither can be undone); New- does not (Medium)' {
        $impact = @{}
        foreach ($name in 'Restore-QcowSnapshot', 'Remove-QcowSnapshot', 'New-QcowSnapshot') {
            $attribute = (Get-Command $name).ImplementingType.GetCustomAttributes([System.Management.Automation.CmdletAttribute], $false)[0]
            $attribute.SupportsShouldProcess | Should -BeTrue
            $impact[$name] = "$($attribute.ConfirmImpact)"
        }
        $impact['Restore-QcowSnapshot'] | Should -Be 'High'
        $impact['Remove-QcowSnapshot'] | Should -Be 'High'
        $impact['New-QcowSnapshot'] | Should -Be 'Medium'
    }
}
