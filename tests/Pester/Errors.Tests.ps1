#Requires -Version 7.0
<#
    Pester 5 tests of the cmdlets' errors: per-file problems are non-terminating ErrorRecords with stable
    ids (QcowPS.Something), -ErrorAction Stop terminates; an unknown snapshot is QcowPS.SnapshotNotFound.
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

Describe 'Errors: per-file problems are non-terminating, -ErrorAction Stop terminates' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        $good1 = New-QemuImage -Path (Join-Path $dir 'good1.qcow2') -Size 1M
        $good2 = New-QemuImage -Path (Join-Path $dir 'good2.qcow2') -Size 2M
        Invoke-QemuImg 'snapshot', '-c', 'snap', $good1 | Out-Null
        Invoke-QemuImg 'snapshot', '-c', 'snap', $good2 | Out-Null
        $missing = Join-Path $dir 'missing.qcow2'

        # Right magic, header cut short after 24 bytes.
        $truncated = Join-Path $dir 'truncated.qcow2'
        [IO.File]::WriteAllBytes($truncated, [byte[]](@(0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3) + @(0) * 16))

        # A real header with a damaged field: cluster_bits 40.
        $badHeader = Join-Path $dir 'bad-cluster-bits.qcow2'
        $bytes = [IO.File]::ReadAllBytes($good1)
        $bytes[20] = 0; $bytes[21] = 0; $bytes[22] = 0; $bytes[23] = 40
        [IO.File]::WriteAllBytes($badHeader, $bytes)

        # Wrong magic: 'QFI\0' instead of 'QFI\xfb', the rest of a real image.
        $badMagic = Join-Path $dir 'bad-magic.qcow2'
        $bytes = [IO.File]::ReadAllBytes($good1)
        $bytes[3] = 0
        [IO.File]::WriteAllBytes($badMagic, $bytes)
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'a missing file among good ones: the good ones still produce output, the missing one an ObjectNotFound error' {
        $out = @(Get-QcowInfo $good1, $missing, $good2 -ErrorVariable err -ErrorAction SilentlyContinue)
        $out.Path | Should -Be @($good1, $good2)
        $err | Should -HaveCount 1
        $err[0] | Should -BeOfType ([System.Management.Automation.ErrorRecord])
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.FileNotFound*'
        $err[0].CategoryInfo.Category | Should -Be ([System.Management.Automation.ErrorCategory]::ObjectNotFound)
        "$($err[0].TargetObject)" | Should -BeLike '*missing.qcow2'
    }

    It 'the same from the pipeline' {
        $out = @($good1, $missing, $good2 | Get-QcowInfo -ErrorVariable err -ErrorAction SilentlyContinue)
        $out.VirtualSize | Should -Be @(1MB, 2MB)
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.FileNotFound*'
    }

    It '<Name>: a missing file is a non-terminating QcowPS.FileNotFound' -ForEach @(
        @{ Name = 'Get-QcowSnapshot'; Run = { param($p) Get-QcowSnapshot $p } }
        @{ Name = 'Read-QcowBlock'; Run = { param($p) Read-QcowBlock $p 0 512 } }
        @{ Name = 'Get-QcowCluster'; Run = { param($p) Get-QcowCluster $p } }
        @{ Name = 'Get-QcowTable'; Run = { param($p) Get-QcowTable $p L1 } }
    ) {
        $all = @(& $Run @($good1, $missing, $good2) 2>&1)
        $err = @($all | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })
        $out = @($all | Where-Object { $_ -isnot [System.Management.Automation.ErrorRecord] })
        $out.Count | Should -BeGreaterOrEqual 2
        ($out | ForEach-Object { [IO.Path]::GetFileName($_.Path) } | Select-Object -Unique) | Should -Be @('good1.qcow2', 'good2.qcow2')
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.FileNotFound*'
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'a wildcard that matches nothing is a QcowPS.FileNotFound error' {
        $out = Get-QcowInfo (Join-Path $dir 'nothing-*.qcow2') -ErrorVariable err -ErrorAction SilentlyContinue
        $out | Should -BeNullOrEmpty
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.FileNotFound*'
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'a corrupt image (<Name>) is QcowPS.ImageCorrupt / InvalidData, and the good ones still produce output' -ForEach @(
        @{ Name = 'truncated header'; File = 'truncated.qcow2'; Format = 'Auto' }
        @{ Name = 'cluster_bits out of range'; File = 'bad-cluster-bits.qcow2'; Format = 'Auto' }
    ) {
        $bad = Join-Path $dir $File
        $out = @(Get-QcowInfo $good1, $bad, $good2 -Format $Format -ErrorVariable err -ErrorAction SilentlyContinue)
        $out.Path | Should -Be @($good1, $good2)
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.ImageCorrupt*'
        $err[0].CategoryInfo.Category | Should -Be ([System.Management.Automation.ErrorCategory]::InvalidData)
        $err[0].Exception.Message | Should -Not -BeNullOrEmpty
    }

    It 'a file with a bad magic is QcowPS.WrongImageFormat / InvalidData where qcow2 is needed or named (<Name>)' -ForEach @(
        @{ Name = 'Get-QcowSnapshot'; Run = { param($f) Get-QcowSnapshot $f -ErrorVariable script:err -ErrorAction SilentlyContinue } }
        @{ Name = 'Get-QcowInfo -Format Qcow2'; Run = { param($f) Get-QcowInfo $f -Format Qcow2 -ErrorVariable script:err -ErrorAction SilentlyContinue } }
    ) {
        & $Run $badMagic | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.WrongImageFormat*'
        $err[0].CategoryInfo.Category | Should -Be 'InvalidData'
        $err[0].TargetObject | Should -Be $badMagic
    }

    It 'a file with no known magic named on the command line is read as raw, and says so' {
        # Issue 14: as qemu-img does; a backing file named inside an image is never read as raw unless recorded.
        $out = @(Get-QcowInfo $badMagic, $good1 -ErrorAction Stop)
        $out.Path | Should -Be @($badMagic, $good1)
        "$($out[0].Format)" | Should -Be 'Raw'
        $out[0].VirtualSize | Should -Be (Get-Item -LiteralPath $badMagic).Length
    }

    It '-ErrorAction Stop makes a <Id> terminating' -ForEach @(
        @{ Id = 'QcowPS.FileNotFound'; File = 'missing.qcow2' }
        @{ Id = 'QcowPS.ImageCorrupt'; File = 'truncated.qcow2' }
    ) {
        $target = Join-Path $dir $File
        { Get-QcowInfo $target -ErrorAction Stop } | Should -Throw -ErrorId "$Id,*"
        { Read-QcowBlock $target -Raw -ErrorAction Stop } | Should -Throw -ErrorId "$Id,*"
    }

    It '-ErrorAction Stop stops the pipeline before the next file' {
        $seen = [System.Collections.Generic.List[object]]::new()
        $caught = $null
        try {
            Get-QcowInfo $truncated, $good1 -ErrorAction Stop | ForEach-Object { $seen.Add($_) }
        } catch {
            $caught = $_
        }
        $seen | Should -HaveCount 0
        $caught.FullyQualifiedErrorId | Should -BeLike 'QcowPS.ImageCorrupt*'
        $caught.CategoryInfo.Category | Should -Be 'InvalidData'
    }

    It '$ErrorActionPreference = Stop in a runbook makes try/catch see the ErrorRecord' {
        $caught = & {
            $ErrorActionPreference = 'Stop'
            try { Get-QcowInfo $missing; 'not reached' } catch { $_ }
        }
        $caught | Should -BeOfType ([System.Management.Automation.ErrorRecord])
        $caught.FullyQualifiedErrorId | Should -BeLike 'QcowPS.FileNotFound*'
    }

    It 'a range past the end of the disk is a per-file QcowPS.InvalidArgument' {
        # good1 is 1 MiB, good2 2 MiB: offset 1.5 MiB fits only good2.
        $out = @(Read-QcowBlock $good1, $good2 -Offset 1.5MB -Length 4096 -Raw -ErrorVariable err -ErrorAction SilentlyContinue)
        $out | Should -HaveCount 1
        $out[0].Length | Should -Be 4096
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.InvalidArgument*'
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
    }

    It 'bad parameters terminate even with -ErrorAction SilentlyContinue' {
        { Read-QcowBlock $good1 -Raw -OutFile (Join-Path $dir 'x.raw') -ErrorAction SilentlyContinue } |
            Should -Throw -ErrorId 'QcowPS.ConflictingParameters,*'
        { Read-QcowBlock $good1 -Offset '12Q' -ErrorAction SilentlyContinue } |
            Should -Throw -ExceptionType ([System.Management.Automation.ParameterBindingException]) -ExpectedMessage "*'12Q' is not a size*"
        { Get-QcowTable $good1 -Table L3 -ErrorAction SilentlyContinue } |
            Should -Throw -ExceptionType ([System.Management.Automation.ParameterBindingException])
        Test-Path -LiteralPath (Join-Path $dir 'x.raw') | Should -BeFalse
    }

    It 'an image that a running QEMU holds for writing is QcowPS.ImageInUse / ResourceBusy' -Skip:(-not $IsLinux) {
        # QEMU's image locks are OFD byte-range locks, which QcowPS honours on Linux.
        $held = New-QemuImage -Path (Join-Path $dir 'held.qcow2') -Size 1M
        $start = [System.Diagnostics.ProcessStartInfo]::new('qemu-io')
        foreach ($a in '-f', 'qcow2', $held) { $start.ArgumentList.Add($a) }
        $start.RedirectStandardInput = $true
        $start.RedirectStandardOutput = $true
        $start.RedirectStandardError = $true
        $qemu = [System.Diagnostics.Process]::Start($start)
        try {
            # qemu-io holds the write lock once qemu-img info can no longer take its shared lock.
            $deadline = [DateTime]::UtcNow.AddSeconds(10)
            do {
                Start-Sleep -Milliseconds 100
                & qemu-img info $held *> $null
            } while ($LASTEXITCODE -eq 0 -and [DateTime]::UtcNow -lt $deadline)
            $LASTEXITCODE | Should -Not -Be 0 -Because 'qemu-io must be holding the image for this test'

            $out = @(Get-QcowInfo $held, $good1 -ErrorVariable err -ErrorAction SilentlyContinue)
            $out.Path | Should -Be @($good1)
            $err | Should -HaveCount 1
            $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.ImageInUse*'
            $err[0].CategoryInfo.Category | Should -Be 'ResourceBusy'
        } finally {
            $qemu.StandardInput.Close()  # qemu-io quits at the end of its input
            if (-not $qemu.WaitForExit(5000)) { $qemu.Kill() }
            $qemu.Dispose()
        }
        (Get-QcowInfo $held).Path | Should -Be $held -Because 'the image opens once QEMU has let it go'
    }

    It 'a missing backing file: Get-QcowInfo still describes the image, -BackingChain reports FileNotFound' {
        $base = New-QemuImage -Path (Join-Path $dir 'gone-base.qcow2') -Size 1M
        $orphan = New-QemuImage -Path (Join-Path $dir 'orphan.qcow2') -Size 1M -BackingFile 'gone-base.qcow2' -BackingFormat qcow2
        Remove-Item -LiteralPath $base
        $info = Get-QcowInfo $orphan
        $info.BackingFile | Should -Be 'gone-base.qcow2'
        $info.BackingChainDepth | Should -BeNullOrEmpty
        Get-QcowInfo $orphan -BackingChain -ErrorVariable err -ErrorAction SilentlyContinue | Out-Null
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.FileNotFound*'
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }
}

Describe 'Errors: Remove- and Restore-QcowSnapshot with an unknown snapshot' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It '<Cmdlet> with an unknown <What> is a non-terminating QcowPS.SnapshotNotFound and changes nothing' -ForEach @(
        # Each names a snapshot that $img lacks and $other has: 'no-such-snapshot' is ID 1 of $other, 'n2' its ID 2.
        @{ Cmdlet = 'Remove-QcowSnapshot'; What = 'name'; Params = @{ Name = 'no-such-snapshot' }; OtherLeft = @('n2') }
        @{ Cmdlet = 'Remove-QcowSnapshot'; What = 'ID'; Params = @{ Id = '2' }; OtherLeft = @('no-such-snapshot') }
        @{ Cmdlet = 'Restore-QcowSnapshot'; What = 'name'; Params = @{ Name = 'no-such-snapshot' }; OtherLeft = @('no-such-snapshot', 'n2') }
        @{ Cmdlet = 'Restore-QcowSnapshot'; What = 'ID'; Params = @{ Id = '2' }; OtherLeft = @('no-such-snapshot', 'n2') }
    ) {
        $img = New-QemuImage -Path (Join-Path $dir 'unknown.qcow2') -Size 1M -Write 'write -P 5 0 64k'
        Invoke-QemuImg 'snapshot', '-c', 'known', $img | Out-Null
        $other = New-QemuImage -Path (Join-Path $dir 'unknown-2.qcow2') -Size 1M
        Invoke-QemuImg 'snapshot', '-c', 'no-such-snapshot', $other | Out-Null
        Invoke-QemuImg 'snapshot', '-c', 'n2', $other | Out-Null
        Invoke-QemuIo -Path $other -Command 'write -P 7 0 64k'  # after both snapshots: a restore brings back zeros
        $hash = Get-Hash $img
        $all = @(& $Cmdlet -Path $img @Params -Confirm:$false 2>&1)
        $err = @($all | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.SnapshotNotFound,*'
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        Get-Hash $img | Should -Be $hash
        # Non-terminating: the next image in the same call is still processed, in every case.
        & $Cmdlet -Path $img, $other @Params -Confirm:$false -ErrorAction SilentlyContinue -ErrorVariable err2
        @($err2) | Should -HaveCount 1
        $err2[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.SnapshotNotFound,*'
        Get-Hash $img | Should -Be $hash
        Get-QemuSnapshotNames $other | Should -Be $OtherLeft
        $otherData = if ($Cmdlet -eq 'Restore-QcowSnapshot') { '0 0 64k' } else { '7 0 64k' }
        Get-QemuIoPatternMismatch $other $otherData | Should -BeNullOrEmpty
        Remove-Item -LiteralPath $img, $other
    }
}
