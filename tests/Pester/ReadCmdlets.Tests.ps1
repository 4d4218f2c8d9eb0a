#Requires -Version 7.0
<#
    Pester 5 tests of the read-side QcowPS cmdlets: Get-QcowInfo, Get-QcowSnapshot, Read-QcowBlock,
    Get-QcowCluster and Get-QcowTable, used the way an operations runbook uses them.

    Every image is made at run time with qemu-img / qemu-io in a temporary folder that the block's
    AfterAll removes; qemu-img info / map / convert give the expected answers.
    The module is imported from $env:QCOWPS_MODULE_PATH when set, else from the repository root.
    Without qemu-img the image tests are skipped, except on CI ($env:CI -eq 'true'), where they fail.
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = Test-SkipWithoutQemu
    $module = Import-QcowPSModule
    $ExportedCmdlets = @($module.ExportedCmdlets.Keys | Sort-Object | ForEach-Object { @{ Name = $_ } })
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $QcowModule = Import-QcowPSModule
    $ProgressPreference = 'SilentlyContinue'
}

Describe 'qemu-img prerequisites' {
    It 'qemu-img and qemu-io are on PATH' {
        Assert-QemuToolsInIt
    }
}

Describe 'Inventory runbook: Get-ChildItem | Get-QcowInfo | Export-Csv' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        $images = [ordered]@{
            'small-512M.qcow2' = '512M'
            'exactly-1G.qcow2' = '1G'
            'web-2G.qcow2'     = '2G'
            'db-10G.qcow2'     = '10G'
            'archive-1T.qcow2' = '1T'
        }
        foreach ($name in $images.Keys) {
            $option = if ($name -eq 'db-10G.qcow2') { @{ compat = '0.10' } } else { $null }
            New-QemuImage -Path (Join-Path $dir $name) -Size $images[$name] -Option $option | Out-Null
        }
        # Not an image, and not matched by *.qcow2.
        Set-Content -LiteralPath (Join-Path $dir 'notes.txt') -Value 'not an image'
        $csv = Join-Path $dir 'inventory.csv'
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'exports the images over 1 GB, smallest first, with one row each' {
        Push-Location -LiteralPath $dir
        try {
            Get-ChildItem *.qcow2 | Get-QcowInfo | Where-Object VirtualSize -gt 1GB |
                Sort-Object VirtualSize | Export-Csv -Path $csv -NoTypeInformation
        } finally {
            Pop-Location
        }
        $rows = @(Import-Csv -LiteralPath $csv)
        $rows | Should -HaveCount 3
        $rows.Path | Should -Be @('web-2G.qcow2', 'db-10G.qcow2', 'archive-1T.qcow2' | ForEach-Object { Join-Path $dir $_ })
        $rows.VirtualSize | Should -Be @('2147483648', '10737418240', '1099511627776')
        $rows.Format | Should -Be @('Qcow2', 'Qcow2', 'Qcow2')
        $rows.Version | Should -Be @('3', '2', '3')
        $rows.ClusterSize | Should -Be @('65536', '65536', '65536')
        $rows.SnapshotCount | Should -Be @('0', '0', '0')
    }

    It 'writes every QcowImageInfo property of the contract as a CSV column' {
        Get-QcowInfo -LiteralPath (Join-Path $dir 'web-2G.qcow2') | Export-Csv -Path $csv -NoTypeInformation
        $columns = (Import-Csv -LiteralPath $csv)[0].PSObject.Properties.Name
        $contract = 'Path', 'Format', 'Version', 'VirtualSize', 'FileSize', 'ActualSize', 'ClusterSize', 'BackingFile',
            'BackingFormat', 'DataFile', 'CompressionType', 'RefcountBits', 'LazyRefcounts', 'ExtendedL2', 'Encrypted',
            'Dirty', 'Corrupt', 'SnapshotCount', 'L1Size', 'L1TableOffset', 'RefcountTableOffset', 'IncompatibleFeatures',
            'CompatibleFeatures', 'AutoclearFeatures', 'HeaderExtensions', 'BackingChainDepth'
        foreach ($name in $contract) { $columns | Should -Contain $name }
    }

    It 'reads an inventory CSV back: the Path column binds to -Path by property name' {
        Push-Location -LiteralPath $dir
        try {
            Get-ChildItem *.qcow2 | Get-QcowInfo | Export-Csv -Path $csv -NoTypeInformation
        } finally {
            Pop-Location
        }
        $again = @(Import-Csv -LiteralPath $csv | Get-QcowInfo)
        $again | Should -HaveCount 5
        ($again | Measure-Object -Property VirtualSize -Sum).Sum | Should -Be (512MB + 1GB + 2GB + 10GB + 1TB)
    }

    It 'takes FileInfo objects from Get-ChildItem' {
        $files = @(Get-ChildItem -LiteralPath $dir -Filter *.qcow2 | Sort-Object Name)
        $info = @($files | Get-QcowInfo)
        $info | Should -HaveCount 5
        $info.Path | Should -Be $files.FullName
        $info | ForEach-Object { $_ | Should -BeOfType ([QcowPS.QcowImageInfo]) }
    }

    It 'takes path strings from the pipeline, relative and absolute' {
        Push-Location -LiteralPath $dir
        try {
            $info = @('web-2G.qcow2', (Join-Path $dir 'db-10G.qcow2') | Get-QcowInfo)
        } finally {
            Pop-Location
        }
        $info.VirtualSize | Should -Be @(2GB, 10GB)
    }

    It 'expands wildcards in -Path' {
        $info = @(Get-QcowInfo -Path (Join-Path $dir '*-?G.qcow2') | Sort-Object VirtualSize)
        [IO.Path]::GetFileName($info[0].Path) | Should -Be 'exactly-1G.qcow2'
        $info.VirtualSize | Should -Be @(1GB, 2GB)
        @(Get-QcowInfo (Join-Path $dir '*.qcow2')) | Should -HaveCount 5
    }

    It 'accepts several paths and wildcards in one call' {
        $info = @(Get-QcowInfo (Join-Path $dir 'web-*'), (Join-Path $dir 'archive-*'))
        $info.VirtualSize | Should -Be @(2GB, 1TB)
    }
}

Describe 'Paths: -LiteralPath, [ ] in names, provider-relative paths' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        $elsewhere = New-QcowTestFolder -Prefix 'qcowps-pester-cwd'
        # 'vm[1].qcow2' is 1 MiB; 'vm1.qcow2', which the wildcard 'vm[1].qcow2' matches, is 2 MiB.
        $bracket = New-QemuImage -Path (Join-Path $dir 'vm[1].qcow2') -Size 1M -Write 'write -P 0x5a 0 4k'
        Invoke-QemuImg 'snapshot', '-c', 'bracket-snap', $bracket | Out-Null
        New-QemuImage -Path (Join-Path $dir 'vm1.qcow2') -Size 2M | Out-Null

        # disk.qcow2 in $PWD (3 MiB, 0xaa) and a decoy of the same name in the process's current directory (5 MiB, 0xbb).
        $disk = New-QemuImage -Path (Join-Path $dir 'disk.qcow2') -Size 3M -Write 'write -P 0xaa 0 64k'
        Invoke-QemuImg 'snapshot', '-c', 'in-pwd', $disk | Out-Null
        $decoy = New-QemuImage -Path (Join-Path $elsewhere 'disk.qcow2') -Size 5M -Write 'write -P 0xbb 0 64k'
        Invoke-QemuImg 'snapshot', '-c', 'in-process-dir', $decoy | Out-Null
        New-Item -ItemType Directory -Path (Join-Path $dir 'sub') | Out-Null

        function Invoke-InPwd([scriptblock]$Script, [string]$Location = $dir) {
            $saved = [Environment]::CurrentDirectory
            [Environment]::CurrentDirectory = $elsewhere
            Push-Location -LiteralPath $Location
            try { & $Script } finally { Pop-Location; [Environment]::CurrentDirectory = $saved }
        }
    }
    AfterAll {
        Remove-QcowTestFolder $dir
        Remove-QcowTestFolder $elsewhere
    }

    It '-LiteralPath opens a file whose name has [ and ]' {
        $info = Get-QcowInfo -LiteralPath $bracket
        $info.Path | Should -Be $bracket
        $info.VirtualSize | Should -Be 1MB
    }

    It '-Path typed on the command line is a wildcard, as with Get-Item; a Path piped from our objects is the file it names' {
        # Issue 14: -Path 'vm[1].qcow2' matches vm1.qcow2, as Get-Item -Path does; objects piped by their
        # Path property (QcowImageInfo of vm[1].qcow2) still reach vm[1].qcow2.
        $typed = @(Get-QcowInfo -Path (Join-Path $dir 'vm[1].qcow2'))
        $typed | Should -HaveCount 1
        [IO.Path]::GetFileName($typed[0].Path) | Should -Be 'vm1.qcow2'
        $piped = @([pscustomobject]@{ Path = (Join-Path $dir 'vm[1].qcow2') } | Get-QcowInfo)
        [IO.Path]::GetFileName($piped[0].Path) | Should -Be 'vm[1].qcow2'
        $piped[0].VirtualSize | Should -Be 1MB
    }

    It '-Path expands [ ] as a wildcard character class when no file has that exact name' {
        $info = @(Get-QcowInfo -Path (Join-Path $dir 'v[m]1.qcow2'))
        $info | Should -HaveCount 1
        [IO.Path]::GetFileName($info[0].Path) | Should -Be 'vm1.qcow2'
        $info[0].VirtualSize | Should -Be 2MB
    }

    It 'Get-ChildItem output for a [ ] name binds to -LiteralPath (PSPath)' {
        $info = Get-ChildItem -LiteralPath $bracket | Get-QcowInfo
        $info.Path | Should -Be $bracket
        $info.VirtualSize | Should -Be 1MB
    }

    It '<Name> -LiteralPath works with a [ ] name' -ForEach @(
        @{ Name = 'Get-QcowInfo'; Run = { param($p) Get-QcowInfo -LiteralPath $p } }
        @{ Name = 'Get-QcowSnapshot'; Run = { param($p) Get-QcowSnapshot -LiteralPath $p } }
        @{ Name = 'Read-QcowBlock'; Run = { param($p) Read-QcowBlock -LiteralPath $p -Offset 0 -Length 4096 } }
        @{ Name = 'Get-QcowCluster'; Run = { param($p) Get-QcowCluster -LiteralPath $p -Allocated } }
        @{ Name = 'Get-QcowTable'; Run = { param($p) Get-QcowTable -LiteralPath $p -Table L1 -NonZero } }
    ) {
        $out = @(& $Run $bracket)
        $out.Count | Should -BeGreaterThan 0
        $out | ForEach-Object { $_.Path | Should -Be $bracket }
    }

    It 'Read-QcowBlock -LiteralPath -Raw reads the [ ] file''s data' {
        $bytes = Read-QcowBlock -LiteralPath $bracket -Offset 0 -Length 4096 -Raw
        Get-BytesHash $bytes | Should -Be (Get-BytesHash (New-FilledBytes 4096 0x5a))
    }

    It '<Name> resolves a relative path against $PWD, not the process directory' -ForEach @(
        @{ Name = 'Get-QcowInfo'; Run = { Get-QcowInfo disk.qcow2 }; Check = { param($o, $d) $o.VirtualSize | Should -Be 3MB } }
        @{ Name = 'Get-QcowSnapshot'; Run = { Get-QcowSnapshot disk.qcow2 }; Check = { param($o, $d) $o.Name | Should -Be 'in-pwd' } }
        @{ Name = 'Read-QcowBlock'; Run = { Read-QcowBlock disk.qcow2 0 16 }; Check = { param($o, $d) $o.Data[0] | Should -Be 0xaa } }
        @{ Name = 'Get-QcowCluster'; Run = { Get-QcowCluster disk.qcow2 -Allocated }; Check = { param($o, $d) $o.Length | Should -Be 65536 } }
        @{ Name = 'Get-QcowTable'; Run = { Get-QcowTable disk.qcow2 L1 -NonZero }; Check = { param($o, $d) $o.Index | Should -Be 0 } }
    ) {
        $out = @(Invoke-InPwd $Run)
        $out | Should -HaveCount 1
        $out[0].Path | Should -Be (Join-Path $dir 'disk.qcow2')
        & $Check $out[0] $dir
    }

    It 'resolves ..\ and ./ paths against $PWD' {
        $info = @(Invoke-InPwd { Get-QcowInfo ../disk.qcow2, ./../vm1.qcow2 } -Location (Join-Path $dir 'sub'))
        $info.Path | Should -Be @((Join-Path $dir 'disk.qcow2'), (Join-Path $dir 'vm1.qcow2'))
    }

    It 'resolves a PSDrive path' {
        New-PSDrive -Name QcowTest -PSProvider FileSystem -Root $dir -Scope Global | Out-Null
        try {
            (Get-QcowInfo 'QcowTest:/disk.qcow2').Path | Should -Be (Join-Path $dir 'disk.qcow2')
            (Get-QcowInfo -LiteralPath 'QcowTest:/vm[1].qcow2').Path | Should -Be $bracket
        } finally {
            Remove-PSDrive -Name QcowTest -Scope Global
        }
    }

    It 'Read-QcowBlock -OutFile writes a relative file under $PWD' {
        Invoke-InPwd { Read-QcowBlock disk.qcow2 -Offset 0 -Length 64K -OutFile 'first-cluster.bin' }
        Test-Path -LiteralPath (Join-Path $elsewhere 'first-cluster.bin') | Should -BeFalse
        $written = Join-Path $dir 'first-cluster.bin'
        (Get-Item -LiteralPath $written).Length | Should -Be 65536
        Get-BytesHash (Get-FileBytes $written) | Should -Be (Get-BytesHash (New-FilledBytes 65536 0xaa))
    }

    It 'a QcowImageInfo of a [ ] file piped to Get-QcowSnapshot finds the same file' {
        # The object's path binds to -LiteralPath (PSPath): bound to -Path, [1] would be a wildcard.
        $snap = @(Get-QcowInfo -LiteralPath $bracket | Get-QcowSnapshot)
        $snap.Name | Should -Be 'bracket-snap'
    }
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

Describe 'Get-QcowInfo compared with qemu-img info' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder

        # v2: 4 KiB clusters over a raw backing file, one snapshot.
        New-QemuImage -Path (Join-Path $dir 'base.raw') -Size 64M -Format raw | Out-Null
        $v2 = New-QemuImage -Path (Join-Path $dir 'v2.qcow2') -Size 64M -Option @{ compat = '0.10'; cluster_size = 4096 } `
            -BackingFile 'base.raw' -BackingFormat raw -Write 'write -P 0x5a 1M 8k'
        Invoke-QemuImg 'snapshot', '-c', 'v2-snap', $v2 | Out-Null

        # v3: 128 KiB clusters, lazy refcounts, 8-bit refcounts, zstd, qcow2 backing, two snapshots, left dirty.
        $v3base = New-QemuImage -Path (Join-Path $dir 'v3-base.qcow2') -Size 256M -Write 'write -P 0x11 0 64k'
        $v3 = New-QemuImage -Path (Join-Path $dir 'v3.qcow2') -Size 256M `
            -Option ([ordered]@{ lazy_refcounts = 'on'; refcount_bits = 8; compression_type = 'zstd'; cluster_size = 131072 }) `
            -BackingFile 'v3-base.qcow2' -BackingFormat qcow2
        Invoke-QemuImg 'snapshot', '-c', 's1', $v3 | Out-Null
        Invoke-QemuImg 'snapshot', '-c', 's2', $v3 | Out-Null
        # With lazy refcounts, a write followed by abort leaves the dirty bit set.
        & qemu-io -c 'write -P 0x22 0 128k' -c 'abort' $v3 *> $null

        # A three-layer chain: raw <- qcow2 <- qcow2.
        $chainBase = New-QemuImage -Path (Join-Path $dir 'chain-base.raw') -Size 8M -Format raw
        $chainMid = New-QemuImage -Path (Join-Path $dir 'chain-mid.qcow2') -Size 8M -BackingFile 'chain-base.raw' -BackingFormat raw
        $chainTop = New-QemuImage -Path (Join-Path $dir 'chain-top.qcow2') -Size 8M -BackingFile 'chain-mid.qcow2' -BackingFormat qcow2

        $qed = New-QemuImage -Path (Join-Path $dir 'legacy.qed') -Size 16M -Format qed -Write 'write -P 3 0 4k'
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It '<Name> image: every field agrees with qemu-img info --output=json' -ForEach @(
        @{ Name = 'v2'; File = 'v2.qcow2'; Dirty = $false; Snapshots = 1 }
        @{ Name = 'v3'; File = 'v3.qcow2'; Dirty = $true; Snapshots = 2 }
        @{ Name = 'v3 base'; File = 'v3-base.qcow2'; Dirty = $false; Snapshots = 0 }
    ) {
        $path = Join-Path $dir $File
        $q = Get-QemuImageInfo $path
        $d = $q.'format-specific'.data
        # The images are what the test means them to be.
        $q.'dirty-flag' | Should -Be $Dirty
        @($q.PSObject.Properties.Name -eq 'snapshots' | ForEach-Object { $q.snapshots }).Count | Should -Be $Snapshots

        $i = Get-QcowInfo $path
        $i.Path | Should -Be $path
        "$($i.Format)" | Should -Be $q.format
        $i.VirtualSize | Should -Be $q.'virtual-size'
        $i.ClusterSize | Should -Be $q.'cluster-size'
        $i.ActualSize | Should -Be $q.'actual-size'
        $i.FileSize | Should -Be (Get-Item -LiteralPath $path).Length
        $i.Compat | Should -Be $d.compat
        $i.Version | Should -Be $(if ($d.compat -eq '0.10') { 2 } else { 3 })
        $i.RefcountBits | Should -Be $d.'refcount-bits'
        $i.LazyRefcounts | Should -Be ([bool]$d.'lazy-refcounts')
        "$($i.CompressionType)" | Should -Be $d.'compression-type'
        $i.ExtendedL2 | Should -Be ([bool]$d.'extended-l2')
        $i.Corrupt | Should -Be ([bool]$d.corrupt)
        $i.BackingFile | Should -Be $q.'backing-filename'
        $i.BackingFormat | Should -Be $q.'backing-filename-format'
        $i.FullBackingFile | Should -Be $q.'full-backing-filename'
        $i.Dirty | Should -Be $q.'dirty-flag'
        $i.SnapshotCount | Should -Be $Snapshots
        $i.Encrypted | Should -BeFalse
    }

    It 'v3: the lazy-refcounts bit and the dirty bit show in the feature flags' {
        $i = Get-QcowInfo (Join-Path $dir 'v3.qcow2')
        $i.CompatibleFeatures.HasFlag([QcowPS.Engine.Qcow2.Qcow2CompatibleFeatures]::LazyRefcounts) | Should -BeTrue
        $i.IncompatibleFeatures.HasFlag([QcowPS.Engine.Qcow2.Qcow2IncompatibleFeatures]::Dirty) | Should -BeTrue
        $i.IncompatibleFeatures.HasFlag([QcowPS.Engine.Qcow2.Qcow2IncompatibleFeatures]::CompressionType) | Should -BeTrue
        $i.HeaderExtensions | Should -Contain 'BackingFormat'
    }

    It 'QED and raw images: format, size and cluster size agree with qemu-img info' {
        $q = Get-QemuImageInfo $qed
        $i = Get-QcowInfo $qed
        "$($i.Format)" | Should -Be 'qed'
        $i.VirtualSize | Should -Be $q.'virtual-size'
        $i.ClusterSize | Should -Be $q.'cluster-size'
        $i.Version | Should -BeNullOrEmpty
        $raw = Get-QcowInfo (Join-Path $dir 'base.raw') -Format Raw
        $raw.VirtualSize | Should -Be 64MB
    }

    It '-BackingChain returns one object per layer, top first, with BackingChainDepth' {
        $layers = @(Get-QcowInfo $chainTop -BackingChain)
        $q = @(Get-QemuImageInfo $chainTop -BackingChain)
        $layers | Should -HaveCount 3
        $layers.Path | Should -Be @($chainTop, $chainMid, $chainBase)
        $layers.Path | Should -Be $q.filename
        $layers.BackingChainDepth | Should -Be @(2, 1, 0)
        $layers.Format | Should -Be @('Qcow2', 'Qcow2', 'Raw')
        $layers.BackingFile | Should -Be @('chain-mid.qcow2', 'chain-base.raw', $null)
        $layers.VirtualSize | Should -Be $q.'virtual-size'
    }

    It 'without -BackingChain there is one object, whose BackingChainDepth counts the layers below it' {
        $info = @(Get-QcowInfo $chainTop)
        $info | Should -HaveCount 1
        $info[0].BackingChainDepth | Should -Be 2
        (Get-QcowInfo $chainBase -Format Raw).BackingChainDepth | Should -Be 0
    }
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

Describe 'Read-QcowBlock' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        # 4 MiB, 64 KiB clusters: data, an unaligned run, a zero cluster (v3 zero flag) and holes.
        $img = New-QemuImage -Path (Join-Path $dir 'data.qcow2') -Size 4M -Write @(
            'write -P 0xab 0 64k', 'write -P 0xcd 100000 5000', 'write -z 1M 64k', 'write -P 0xef 2M 128k')
        $imgRaw = Export-QemuRaw -Path $img -Destination (Join-Path $dir 'data.raw')

        # Backing chain: base has 0x11 in 0-128k; top overwrites 64k-128k with 0x22.
        $base = New-QemuImage -Path (Join-Path $dir 'base.qcow2') -Size 4M -Write 'write -P 0x11 0 128k'
        $top = New-QemuImage -Path (Join-Path $dir 'top.qcow2') -Size 4M -BackingFile 'base.qcow2' -BackingFormat qcow2 `
            -Write 'write -P 0x22 64k 64k'

        # Internal snapshot 'golden', then the active layer changes.
        $snap = New-QemuImage -Path (Join-Path $dir 'snap.qcow2') -Size 2M -Write 'write -P 0x11 0 128k'
        Invoke-QemuImg 'snapshot', '-c', 'golden', $snap | Out-Null
        Invoke-QemuIo $snap 'write -P 0x22 0 64k', 'write -P 0x33 1M 64k'
        $goldenRaw = Export-QemuRaw -Path $snap -Destination (Join-Path $dir 'golden.raw') -SnapshotName 'golden'
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It '-Raw returns one byte[] equal to what qemu-io wrote' {
        $out = @(Read-QcowBlock $img -Offset 100000 -Length 5000 -Raw)
        $out | Should -HaveCount 1
        $out[0].GetType() | Should -Be ([byte[]])
        $out[0].Length | Should -Be 5000
        Get-BytesHash $out[0] | Should -Be (Get-BytesHash (New-FilledBytes 5000 0xcd))
    }

    It '-Raw takes qemu-img style sizes: 2M / 128K' {
        $bytes = Read-QcowBlock $img '2M' '128K' -Raw
        $bytes.Length | Should -Be 128KB
        Get-BytesHash $bytes | Should -Be (Get-BytesHash (New-FilledBytes 128KB 0xef))
    }

    It '-Raw across data, holes and zero clusters equals qemu-img convert output' -ForEach @(
        @{ Offset = 60000; Length = 50000 }
        @{ Offset = 0; Length = 4MB }
        @{ Offset = 1MB - 100; Length = 70000 }
    ) {
        $bytes = Read-QcowBlock $img -Offset $Offset -Length $Length -Raw
        Get-BytesHash $bytes | Should -Be (Get-BytesHash (Get-FileBytes $imgRaw -Offset $Offset -Length $Length))
    }

    It 'default output: QcowBlock pieces of at most one cluster, contiguous, with the right data' {
        $blocks = @(Read-QcowBlock $img 1000 200000)
        $names = $blocks[0].PSObject.Properties.Name
        foreach ($p in 'Path', 'Offset', 'Length', 'Data', 'ClusterType', 'HostOffset', 'Layer') { $names | Should -Contain $p }
        $blocks[0].Offset | Should -Be 1000
        $blocks[0].Length | Should -Be (65536 - 1000)
        $next = 1000
        foreach ($b in $blocks) {
            $b | Should -BeOfType ([QcowPS.QcowBlock])
            $b.Offset | Should -Be $next
            $b.Length | Should -BeLessOrEqual 65536
            $b.Data.Length | Should -Be $b.Length
            [Math]::Floor($b.Offset / 65536) | Should -Be ([Math]::Floor(($b.Offset + $b.Length - 1) / 65536)) -Because 'a piece never crosses a cluster boundary'
            $next += $b.Length
        }
        $next | Should -Be 201000
        $joined = [IO.MemoryStream]::new()
        foreach ($b in $blocks) { $joined.Write($b.Data, 0, $b.Data.Length) }
        Get-BytesHash $joined.ToArray() | Should -Be (Get-BytesHash (Get-FileBytes $imgRaw -Offset 1000 -Length 200000))
    }

    It 'default output: ClusterType and HostOffset say how each piece is stored' {
        $blocks = @(Read-QcowBlock $img)
        $blocks | Should -HaveCount 64
        ($blocks | Measure-Object -Property Length -Sum).Sum | Should -Be 4MB
        $byOffset = @{}
        $blocks | ForEach-Object { $byOffset[$_.Offset] = $_ }
        $byOffset[[long]0].ClusterType | Should -Be 'Normal'
        $byOffset[[long]0].HostOffset | Should -Not -BeNullOrEmpty
        $byOffset[[long]1MB].ClusterType | Should -Be 'Zero'
        $byOffset[[long]1MB].HostOffset | Should -BeNullOrEmpty
        $byOffset[[long]3MB].ClusterType | Should -Be 'Unallocated'
        $byOffset[[long]3MB].HostOffset | Should -BeNullOrEmpty
        $byOffset[[long]2MB].ClusterType | Should -Be 'Normal'
        $blocks.Layer | Select-Object -Unique | Should -Be 0
        # Where the data is, host offsets agree with qemu-img map.
        $map = Get-QemuMap $img | Where-Object data
        foreach ($m in $map) {
            $byOffset[[long]$m.start].HostOffset | Should -Be $m.offset
        }
    }

    It 'in a backing chain, Layer says which layer supplied the data' {
        $blocks = @(Read-QcowBlock $top 0 192K)
        $blocks | Should -HaveCount 3
        $blocks.Layer | Should -Be @(1, 0, 1)
        $blocks.ClusterType | Should -Be @('Normal', 'Normal', 'Unallocated')
        $blocks[0].LayerPath | Should -Be $base
        $blocks[1].LayerPath | Should -Be $top
        Get-BytesHash $blocks[0].Data | Should -Be (Get-BytesHash (New-FilledBytes 65536 0x11))
        Get-BytesHash $blocks[1].Data | Should -Be (Get-BytesHash (New-FilledBytes 65536 0x22))
        Get-BytesHash $blocks[2].Data | Should -Be (Get-BytesHash (New-FilledBytes 65536 0))
        # Layers agree with qemu-img map's depth.
        $map = Get-QemuMap $top
        foreach ($b in $blocks) {
            $m = $map | Where-Object { $_.start -le $b.Offset -and $b.Offset -lt $_.start + $_.length }
            $b.Layer | Should -Be $m.depth
        }
    }

    It '-Snapshot <Snapshot> reads the snapshot''s data, as qemu-img convert -l snapshot.name does' -ForEach @(
        @{ Snapshot = 'golden' }
        @{ Snapshot = '1' }
    ) {
        $bytes = Read-QcowBlock $snap -Snapshot $Snapshot -Raw
        Get-BytesHash $bytes | Should -Be (Get-BytesHash (Get-FileBytes $goldenRaw))
        $bytes[0] | Should -Be 0x11
        $bytes[[int]1MB] | Should -Be 0
        (Read-QcowBlock $snap 0 1 -Raw)[0] | Should -Be 0x22 -Because 'the active layer has changed since the snapshot'
    }

    It '-Snapshot with default output returns QcowBlock pieces of the snapshot' {
        $blocks = @(Read-QcowBlock $snap -Snapshot golden -Offset 0 -Length 128K)
        $blocks | Should -HaveCount 2
        $blocks | ForEach-Object { Get-BytesHash $_.Data | Should -Be (Get-BytesHash (New-FilledBytes 65536 0x11)) }
        $blocks.Path | Should -Be @($snap, $snap)
    }

    It '-Snapshot with an unknown name is a non-terminating QcowPS.SnapshotNotFound' {
        Read-QcowBlock $snap -Snapshot 'nope' -Raw -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.SnapshotNotFound*'
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It '-OutFile of <Name> is byte-identical to qemu-img convert -O raw' -ForEach @(
        @{ Name = 'a standalone image'; File = 'data.qcow2'; Snapshot = $null }
        @{ Name = 'a backing chain'; File = 'top.qcow2'; Snapshot = $null }
        @{ Name = 'a snapshot'; File = 'snap.qcow2'; Snapshot = 'golden' }
    ) {
        $source = Join-Path $dir $File
        $expected = Export-QemuRaw -Path $source -Destination (Join-Path $dir "$File.expected.raw") -SnapshotName $Snapshot
        $target = Join-Path $dir "$File.out.raw"
        $params = @{ Path = $source; OutFile = $target }
        if ($Snapshot) { $params.Snapshot = $Snapshot }
        $out = Read-QcowBlock @params
        $out | Should -BeNullOrEmpty -Because '-OutFile writes nothing to the pipeline'
        (Get-Item -LiteralPath $target).Length | Should -Be (Get-Item -LiteralPath $expected).Length
        (Get-FileHash -LiteralPath $target).Hash | Should -Be (Get-FileHash -LiteralPath $expected).Hash
    }

    It '-OutFile with -Offset and -Length writes just that range' {
        $target = Join-Path $dir 'range.bin'
        Read-QcowBlock $img -Offset 64K -Length 128K -OutFile $target
        (Get-Item -LiteralPath $target).Length | Should -Be 128KB
        Get-BytesHash (Get-FileBytes $target) | Should -Be (Get-BytesHash (Get-FileBytes $imgRaw -Offset 64KB -Length 128KB))
    }

    It 'refuses to -OutFile over the image it reads, leaving the image intact' {
        # Opening the target with FileMode.Create before reading would truncate the image it reads.
        $victim = New-QemuImage -Path (Join-Path $dir 'victim.qcow2') -Size 1M -Write 'write -P 0x42 0 64k'
        $hash = (Get-FileHash -LiteralPath $victim).Hash
        Read-QcowBlock $victim -OutFile $victim -ErrorVariable err -ErrorAction SilentlyContinue
        (Get-FileHash -LiteralPath $victim).Hash | Should -Be $hash
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.InvalidArgument*'
        $err[0].Exception.Message | Should -BeLike '*the image being read*'
    }

    It 'reads a raw file with -Format Raw' {
        $bytes = Read-QcowBlock $imgRaw -Format Raw -Offset 100000 -Length 5000 -Raw
        Get-BytesHash $bytes | Should -Be (Get-BytesHash (New-FilledBytes 5000 0xcd))
    }
}

Describe 'Get-QcowCluster' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        # 1 MiB, 64 KiB clusters: data 0-128k, a zero cluster at 192k, data at 512k, holes elsewhere.
        $map = New-QemuImage -Path (Join-Path $dir 'map.qcow2') -Size 1M -Write @(
            'write -P 0x11 0 128k', 'write -z 192k 64k', 'write -P 0x22 512k 64k')
        $base = New-QemuImage -Path (Join-Path $dir 'base.qcow2') -Size 1M -Write 'write -P 0x11 0 128k', 'write -P 0x12 768k 64k'
        $top = New-QemuImage -Path (Join-Path $dir 'top.qcow2') -Size 1M -BackingFile 'base.qcow2' -BackingFormat qcow2 `
            -Write 'write -P 0x22 64k 64k', 'write -z 192k 64k'

        $src = New-QemuImage -Path (Join-Path $dir 'src.qcow2') -Size 1M -Write 'write -P 0x41 0 256k', 'write -P 0x42 512k 64k'
        $compressed = Join-Path $dir 'compressed.qcow2'
        Invoke-QemuImg 'convert', '-c', '-O', 'qcow2', $src, $compressed | Out-Null

        $shared = New-QemuImage -Path (Join-Path $dir 'shared.qcow2') -Size 1M -Write 'write -P 0x11 0 192k'
        Invoke-QemuImg 'snapshot', '-c', 's1', $shared | Out-Null
        Invoke-QemuIo $shared 'write -P 0x22 64k 64k'

        function ConvertTo-ClusterFlags($Extents, $ClusterSize, $DiskSize, [switch]$Qemu) {
            # One entry per cluster: data / present / depth, from qemu-img map or from Get-QcowCluster -Extent.
            $flags = @()
            for ($off = 0; $off -lt $DiskSize; $off += $ClusterSize) {
                if ($Qemu) {
                    $e = $Extents | Where-Object { $_.start -le $off -and $off -lt $_.start + $_.length }
                    $flags += '{0}/{1}/{2}' -f $e.data, $e.present, $e.depth
                } else {
                    $e = $Extents | Where-Object { $_.VirtualOffset -le $off -and $off -lt $_.VirtualOffset + $_.Length }
                    $data = $e.ClusterType -in 'Normal', 'Compressed'
                    $flags += '{0}/{1}/{2}' -f $data, ($e.ClusterType -ne 'Unallocated'), $e.Layer
                }
            }
            return , $flags
        }
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It '-Extent agrees with qemu-img map on allocation for <Name>' -ForEach @(
        @{ Name = 'data, a zero cluster and holes'; File = 'map.qcow2' }
        @{ Name = 'a backing chain'; File = 'top.qcow2' }
    ) {
        $path = Join-Path $dir $File
        $q = @(Get-QemuMap $path)
        $extents = @(Get-QcowCluster $path -Extent)
        # The extents tile the disk.
        $next = 0
        foreach ($e in $extents) { $e.VirtualOffset | Should -Be $next; $next += $e.Length }
        $next | Should -Be 1MB
        # Same data / present / depth for every cluster, merged into as many runs as qemu-img map reports.
        (ConvertTo-ClusterFlags $extents 65536 1MB) | Should -Be (ConvertTo-ClusterFlags $q 65536 1MB -Qemu)
        $extents | Should -HaveCount $q.Count
        foreach ($m in $q | Where-Object data) {
            ($extents | Where-Object VirtualOffset -eq $m.start).HostOffset | Should -Be $m.offset
        }
    }

    It '-Extent -Allocated leaves out the unallocated runs' {
        $extents = @(Get-QcowCluster $map -Extent -Allocated)
        $extents.ClusterType | Should -Be @('Normal', 'Zero', 'Normal')
        $extents.VirtualOffset | Should -Be @(0, 192KB, 512KB)
        ($extents | ForEach-Object Length) | Should -Be @(128KB, 64KB, 64KB)
    }

    It 'per-cluster output covers every guest cluster with its L2 entry decoded' {
        $clusters = @(Get-QcowCluster $map)
        $clusters | Should -HaveCount 16
        $clusters.VirtualOffset | Should -Be @(0..15 | ForEach-Object { $_ * 65536 })
        $clusters | ForEach-Object { $_ | Should -BeOfType ([QcowPS.QcowCluster]); $_.Length | Should -Be 65536 }
        $types = $clusters.ClusterType | ForEach-Object { "$_" }
        $types[0..3] | Should -Be @('Normal', 'Normal', 'Unallocated', 'Zero')
        $types[8] | Should -Be 'Normal'
        $clusters[0].L1Index | Should -Be 0
        $clusters[3].L2Index | Should -Be 3
        $clusters[3].L2Entry | Should -Be 1 -Because 'a zero cluster without host cluster is just the zero flag'
        $clusters[0].Copied | Should -BeTrue
        $clusters[0].Refcount | Should -Be 1
    }

    It '-Allocated lists only clusters with an L2 entry' {
        $clusters = @(Get-QcowCluster $map -Allocated)
        $clusters.VirtualOffset | Should -Be @(0, 64KB, 192KB, 512KB)
    }

    It '-Offset and -Length (size strings) restrict the clusters' {
        (Get-QcowCluster $map -Offset 64K -Length '128K').VirtualOffset | Should -Be @(64KB, 128KB)
    }

    It 'clusters of qemu-img convert -c are Compressed with CompressedSectors decoded from the L2 entry' {
        $clusters = @(Get-QcowCluster $compressed -Allocated)
        $clusters | Should -HaveCount 5
        $clusters.VirtualOffset | Should -Be @(0, 64KB, 128KB, 192KB, 512KB)
        foreach ($c in $clusters) {
            "$($c.ClusterType)" | Should -Be 'Compressed'
            $c.HostOffset | Should -Not -BeNullOrEmpty
            $c.CompressedSectors | Should -BeGreaterOrEqual 1
            $c.CompressedSize | Should -BeGreaterThan 0
            # cluster_bits 16: bit 62 compressed, bits 54-61 extra sectors, bits 0-53 host offset.
            $entry = [long]$c.L2Entry
            ($entry -shr 62) -band 1 | Should -Be 1
            $entry -band 0x3FFFFFFFFFFFFF | Should -Be $c.HostOffset
            (($entry -shr 54) -band 0xff) + 1 | Should -Be $c.CompressedSectors
        }
        (Get-QcowTable $compressed L2 -Index 0 -NonZero | Select-Object -First 1).Flags | Should -BeLike '*COMPRESSED*'
        # And the compressed image reads back as the source does.
        $out = Join-Path $dir 'compressed.out.raw'
        Read-QcowBlock $compressed -OutFile $out
        $expected = Export-QemuRaw -Path $src -Destination (Join-Path $dir 'src.raw')
        (Get-FileHash -LiteralPath $out).Hash | Should -Be (Get-FileHash -LiteralPath $expected).Hash
    }

    It 'clusters shared with a snapshot have Refcount 2 and no COPIED flag; a rewritten one has Refcount 1' {
        $clusters = @(Get-QcowCluster $shared -Allocated)
        $clusters.VirtualOffset | Should -Be @(0, 64KB, 128KB)
        $clusters.Refcount | Should -Be @(2, 1, 2)
        $clusters.Copied | Should -Be @($false, $true, $false)
        # The refcount blocks say the same.
        foreach ($c in $clusters) {
            $entry = Get-QcowTable $shared RefcountBlock -NonZero | Where-Object Target -eq $c.HostOffset
            $entry.Value | Should -Be $c.Refcount
        }
    }

    It 'a raw image has no L2 entries: per-cluster output is a per-file QcowPS.WrongImageFormat, -Extent works' {
        $raw = Export-QemuRaw -Path $map -Destination (Join-Path $dir 'map.raw')
        Get-QcowCluster $raw -Format Raw -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.WrongImageFormat*'
        $extents = @(Get-QcowCluster $raw -Format Raw -Extent)
        ($extents | Measure-Object -Property Length -Sum).Sum | Should -Be 1MB
    }
}

Describe 'Get-QcowTable' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        # 4 KiB clusters: one L2 table covers 2 MiB, so these writes use L1 entries 0, 1 and 4.
        $tbl = New-QemuImage -Path (Join-Path $dir 'tables.qcow2') -Size 64M -Option @{ cluster_size = 4096 } -Write @(
            'write -P 1 0 4k', 'write -P 2 3M 4k', 'write -P 3 9M 8k', 'write -z 9M 4k')
        # 64 KiB clusters, two data clusters in one L2 table: header, refcount table, refcount block,
        # L1 table, one L2 table and two data clusters = 7 host clusters.
        $simple = New-QemuImage -Path (Join-Path $dir 'simple.qcow2') -Size 64M -Write 'write -P 1 0 64k', 'write -P 2 128k 64k'
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'L1 entries point at the L2 tables whose entries Get-QcowCluster reports' {
        $info = Get-QcowInfo $tbl
        $clusters = @(Get-QcowCluster $tbl -Allocated)
        $clusters.VirtualOffset | Should -Be @(0, 3MB, 9MB, (9MB + 4KB))
        $l1 = @(Get-QcowTable $tbl L1 -NonZero)
        $l1.Index | Should -Be @(0, 1, 4)
        $l1.Index | Should -Be @($clusters.L1Index | Select-Object -Unique)
        foreach ($e in $l1) {
            $e.Offset | Should -Be ($info.L1TableOffset + 8 * $e.Index)
            $e.Target % 4096 | Should -Be 0
            $e.Flags | Should -BeLike '*COPIED*'
        }
        foreach ($c in $clusters) {
            $l1Entry = $l1 | Where-Object Index -eq $c.L1Index
            $l2Entry = @(Get-QcowTable $tbl L2 -Index $c.L1Index | Where-Object Index -eq $c.L2Index)
            $l2Entry | Should -HaveCount 1
            $l2Entry[0].ParentIndex | Should -Be $c.L1Index
            $l2Entry[0].Offset | Should -Be ($l1Entry.Target + 8 * $c.L2Index)
            $l2Entry[0].Value | Should -Be $c.L2Entry
        }
        # The one data cluster overwritten with zeros keeps its host cluster and gets the ZERO flag.
        $zero = $clusters | Where-Object VirtualOffset -eq 9MB
        "$($zero.ClusterType)" | Should -BeIn @('Zero', 'ZeroAllocated')
        (Get-QcowTable $tbl L2 -Index $zero.L1Index | Where-Object Index -eq $zero.L2Index).Flags | Should -BeLike '*ZERO*'
    }

    It 'L2 Target is the data cluster''s host offset' {
        $c = Get-QcowCluster $tbl -Offset 3M -Length 4K
        $e = Get-QcowTable $tbl L2 -Index $c.L1Index | Where-Object Index -eq $c.L2Index
        $e.Target | Should -Be $c.HostOffset
        (Read-QcowBlock $tbl 3M 1 -Raw)[0] | Should -Be 2
    }

    It '-Index selects one L1 entry' {
        $e = @(Get-QcowTable $tbl L1 -Index 4)
        $e | Should -HaveCount 1
        $e[0].Index | Should -Be 4
        $e[0].Target | Should -BeGreaterThan 0
    }

    It 'RefcountBlock -NonZero counts exactly the allocated host clusters (7 here)' {
        $info = Get-QcowInfo $simple
        $entries = @(Get-QcowTable $simple RefcountBlock -NonZero)
        $entries | Should -HaveCount 7
        $entries | Should -HaveCount ($info.FileSize / $info.ClusterSize)
        $entries.Value | Select-Object -Unique | Should -Be 1
        $entries.Target | Should -Be @(0..6 | ForEach-Object { [long]$_ * 65536 })
        # Every host offset the metadata points at is among them.
        $used = @(0, $info.RefcountTableOffset, $info.L1TableOffset) + @((Get-QcowTable $simple L1 -NonZero).Target) +
            @((Get-QcowCluster $simple -Allocated).HostOffset) + @((Get-QcowTable $simple RefcountTable -NonZero).Target)
        ($used | Sort-Object -Unique) | Should -Be $entries.Target
    }

    It 'the refcount table has one block, and that block''s entries are stored where the table points' {
        $info = Get-QcowInfo $simple
        $rt = @(Get-QcowTable $simple RefcountTable -NonZero)
        $rt | Should -HaveCount 1
        $rt[0].Offset | Should -Be $info.RefcountTableOffset
        $first = Get-QcowTable $simple RefcountBlock -Index 0 | Select-Object -First 1
        $first.Offset | Should -Be $rt[0].Target
        $first.ParentIndex | Should -Be 0
        (Get-QcowTable $simple RefcountBlock -Index 0).Count | Should -Be (65536 * 8 / 16) -Because 'a 64 KiB block of 16-bit refcounts'
    }
}

Describe 'Default format views' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        $longBase = New-QemuImage -Path (Join-Path $dir 'a-rather-long-backing-file-name-used-by-the-monthly-inventory-report.qcow2') `
            -Size 4M -Write 'write -P 0x11 0 64k'
        $img = New-QemuImage -Path (Join-Path $dir 'an-equally-long-overlay-image-name-for-the-web-farm-0001.qcow2') -Size 4M `
            -BackingFile ([IO.Path]::GetFileName($longBase)) -BackingFormat qcow2 -Write 'write -P 0x22 64k 64k', 'write -z 128k 64k'
        Invoke-QemuImg 'snapshot', '-c', 'a-snapshot-name-that-is-longer-than-the-name-column-allows', $img | Out-Null
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It '<Type> table view: headers present, human units, every line within 120 columns' -ForEach @(
        @{ Type = 'QcowImageInfo'; Run = { param($p) Get-QcowInfo $p -BackingChain }
            Headers = 'Format', 'VirtualSize', 'FileSize', 'Snaps', 'Flags', 'BackingFile', 'Name'; Expect = '4 MiB' }
        @{ Type = 'QcowSnapshot'; Run = { param($p) Get-QcowSnapshot $p }
            Headers = 'Id', 'Date (UTC)', 'DiskSize', 'VmStateSize', 'Image', 'Name'; Expect = '4 MiB' }
        @{ Type = 'QcowBlock'; Run = { param($p) Read-QcowBlock $p 0 192K }
            Headers = 'Offset', 'Length', 'ClusterType', 'Layer', 'HostOffset', 'Data'; Expect = '0x10000' }
        @{ Type = 'QcowCluster'; Run = { param($p) Get-QcowCluster $p }
            Headers = 'VirtualOffset', 'Length', 'ClusterType', 'HostOffset', 'Refcount', 'Copied', 'Layer', 'L2Entry'; Expect = '64 KiB' }
        @{ Type = 'QcowCluster -Extent'; Run = { param($p) Get-QcowCluster $p -Extent }
            Headers = 'VirtualOffset', 'Length', 'ClusterType', 'Layer', 'HostOffset', 'Image'; Expect = '3.81 MiB' }
        @{ Type = 'QcowTableEntry'; Run = { param($p) Get-QcowTable $p L2 -NonZero }
            Headers = 'Table', 'Index', 'Offset', 'Value', 'Target', 'Flags'; Expect = 'ZERO' }
    ) {
        $objects = @(& $Run $img)
        $objects.Count | Should -BeGreaterThan 0
        $text = $objects | Out-String -Width 120
        $stats = Get-TextLineStats $text
        $stats.MaxLength | Should -BeLessOrEqual 120
        $headerPattern = '^\s*' + (($Headers | ForEach-Object { [regex]::Escape($_) }) -join '\s+') + '\s*$'
        @($stats.Lines -match $headerPattern) | Should -HaveCount 1 -Because "the table header is '$($Headers -join ' ')'"
        $text | Should -BeLike "*$Expect*"
        # One row per object (header, dashes, rows; blank lines aside).
        @($stats.Lines | Where-Object { $_.Trim() }).Count | Should -Be ($objects.Count + 2)
    }

    It 'QcowImageInfo list view shows sizes in units and in bytes, offsets in hex' {
        $text = Get-QcowInfo $img | Format-List | Out-String -Width 120
        (Get-TextLineStats $text).MaxLength | Should -BeLessOrEqual 120
        $text | Should -Match 'VirtualSize\s+:\s+4 MiB \(4194304 bytes\)'
        $text | Should -Match 'L1TableOffset\s+:\s+0x[0-9A-F]+'
        $text | Should -Match 'BackingChainDepth\s+:\s+1'
        $text | Should -Match 'HeaderExtensions\s+:\s+BackingFormat'
    }

    It 'Format-List works for <Type>' -ForEach @(
        @{ Type = 'QcowSnapshot'; Run = { param($p) Get-QcowSnapshot $p }; Property = 'L1TableOffset' }
        @{ Type = 'QcowBlock'; Run = { param($p) Read-QcowBlock $p 0 4K }; Property = 'ClusterType' }
        @{ Type = 'QcowCluster'; Run = { param($p) Get-QcowCluster $p -Allocated }; Property = 'L2Index' }
        @{ Type = 'QcowTableEntry'; Run = { param($p) Get-QcowTable $p L1 }; Property = 'Target' }
    ) {
        $text = & $Run $img | Format-List | Out-String -Width 120
        $text | Should -Match "(?m)^$Property\s+:"
        $text | Should -Match '(?m)^Path\s+:'
        (& $Run $img | Format-List * | Out-String -Width 120) | Should -Match "(?m)^$Property\s+:"
    }
}

Describe 'Comment-based help is built from docs/' {
    It 'the module ships en-US/QcowPS.dll-Help.xml' {
        Join-Path $QcowModule.ModuleBase 'en-US/QcowPS.dll-Help.xml' | Should -Exist -Because `
            'the help is compiled from docs/*.md by build/QcowPS.HelpBuilder (see docs/README.md)'
    }

    It '<Name> has a synopsis, a description, every parameter described and an example' -ForEach $ExportedCmdlets {
        $help = Get-Help -Name $Name -Full
        $help.Synopsis | Should -Not -BeNullOrEmpty
        $help.Synopsis.Trim() | Should -Not -BeLike "$Name *" -Because 'a synopsis that is the syntax line means no help was found'
        ($help.Description.Text -join "`n").Trim() | Should -Not -BeNullOrEmpty
        @($help.Examples.Example).Count | Should -BeGreaterOrEqual 1
        foreach ($example in @($help.Examples.Example)) { "$($example.Code)".Trim() | Should -Not -BeNullOrEmpty }

        $common = [System.Management.Automation.PSCmdlet]::CommonParameters + [System.Management.Automation.PSCmdlet]::OptionalCommonParameters
        $parameters = (Get-Command -Name $Name).Parameters.Keys | Where-Object { $_ -notin $common }
        foreach ($parameter in $parameters) {
            $entry = @($help.Parameters.Parameter) | Where-Object Name -eq $parameter
            $entry | Should -Not -BeNullOrEmpty -Because "-$parameter of $Name needs a help entry"
            ($entry.Description.Text -join "`n").Trim() | Should -Not -BeNullOrEmpty -Because "-$parameter of $Name needs a description"
        }
    }

    It '<Name>: the help''s parameter facts agree with the cmdlet' -ForEach $ExportedCmdlets {
        $help = Get-Help -Name $Name -Full
        $common = [System.Management.Automation.PSCmdlet]::CommonParameters + [System.Management.Automation.PSCmdlet]::OptionalCommonParameters
        foreach ($p in (Get-Command -Name $Name).Parameters.Values | Where-Object Name -notin $common) {
            $entry = @($help.Parameters.Parameter) | Where-Object Name -eq $p.Name | Select-Object -First 1
            $entry | Should -Not -BeNullOrEmpty -Because "-$($p.Name) of $Name needs a help entry"
            $sets = @($p.ParameterSets.Values)
            $because = "the help of -$($p.Name) of $Name must match the code"

            $type = [Nullable]::GetUnderlyingType($p.ParameterType)
            if (-not $type) { $type = $p.ParameterType }
            "$($entry.type.name)" | Should -Be $type.Name -Because $because
            [bool]::Parse($entry.required) | Should -Be ([bool]($sets | Where-Object IsMandatory)) -Because $because
            $position = $sets[0].Position
            $expectedPosition = if ($position -lt 0) { 'named' } else { "$position" }
            "$($entry.position)" | Should -Be $expectedPosition -Because $because
            $expectedAliases = @($p.Aliases | Sort-Object)
            $helpAliases = @(if ($entry.aliases -and $entry.aliases -ne 'none') { $entry.aliases -split ',\s*' | Sort-Object })
            ($helpAliases -join ', ') | Should -Be ($expectedAliases -join ', ') -Because $because
            $globbing = [bool]($p.Attributes | Where-Object { $_ -is [System.Management.Automation.SupportsWildcardsAttribute] })
            [bool]::Parse($entry.globbing) | Should -Be $globbing -Because $because
            $expectedPipeline = @(
                if ($sets | Where-Object ValueFromPipelineByPropertyName) { 'ByPropertyName' }
                if ($sets | Where-Object ValueFromPipeline) { 'ByValue' })
            $helpPipeline = @(if ($entry.pipelineInput -match '\((?<kinds>[^)]*)\)') { $Matches.kinds -split ',\s*' | Sort-Object })
            ($helpPipeline -join ', ') | Should -Be ($expectedPipeline -join ', ') -Because $because
        }
    }

    It 'about_QcowPS is available' {
        Join-Path $QcowModule.ModuleBase 'en-US/about_QcowPS.help.txt' | Should -Exist
        (Get-Help about_QcowPS | Out-String) | Should -BeLike '*QcowPS*'
    }
}
