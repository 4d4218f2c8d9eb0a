#Requires -Version 7.0
<#
    Pester 5 tests of the QcowPS cmdlets that change files: New-QcowImage, Write-QcowBlock, New-QcowSnapshot,
    Remove-QcowSnapshot, Restore-QcowSnapshot, Resize-QcowImage, Repair-QcowImage, and of Test-QcowImage,
    used the way an operations runbook uses them.

    QEMU is the referee: every image the module writes is checked with qemu-img info / check / map / convert
    and read back with qemu-io; every image the module changes was made, or damaged on purpose, at run time
    in a temporary folder that the block's AfterAll removes.
    The module is imported from $env:QCOWPS_MODULE_PATH when set, else from the repository root.
    Without qemu-img the image tests are skipped, except on CI ($env:CI -eq 'true'), where they fail.
    The help of these cmdlets is tested by ReadCmdlets.Tests.ps1 (it covers every exported cmdlet).
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = Test-SkipWithoutQemu
    Import-QcowPSModule | Out-Null

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

    # Images damaged on purpose: what qemu-img check must find, and what Test/Repair-QcowImage must agree with.
    $BrokenCases = @(
        @{ Name = 'a leaked cluster: the header''s refcount raised to 2'; Break = 'HeaderRefcount'; Kind = 'leak' }
        @{ Name = 'a leaked cluster: an L2 entry cleared'; Break = 'ClearL2'; Kind = 'leak' }
        @{ Name = 'a leaked cluster: the file grown by a cluster that is counted'; Break = 'TailLeak'; Kind = 'leak' }
        @{ Name = 'a refcount too low: a data cluster counted 0'; Break = 'DataRefcountZero'; Kind = 'corrupt' }
        @{ Name = 'a refcount too low: a cluster shared with a snapshot counted 1'; Break = 'SharedRefcountOne'; Kind = 'corrupt' }
        @{ Name = 'an L2 entry pointing at the L1 table'; Break = 'L2IntoL1'; Kind = 'corrupt' }
        @{ Name = 'an L2 entry pointing at the refcount block'; Break = 'L2IntoRefcountBlock'; Kind = 'corrupt' }
    )
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $QcowModule = Import-QcowPSModule
    $ProgressPreference = 'SilentlyContinue'

    function Get-RefcountEntry([string]$Path, [long]$HostOffset) {
        # The refcount block entry (16-bit by default) that counts the host cluster at $HostOffset.
        $entry = @(Get-QcowTable $Path RefcountBlock | Where-Object Target -eq $HostOffset)
        if ($entry.Count -ne 1) { throw "no single refcount entry for host offset $HostOffset in '$Path'" }
        return $entry[0]
    }

    function Get-L2EntryOf([string]$Path, [long]$VirtualOffset) {
        # The L2 table entry of the guest cluster at $VirtualOffset.
        $cluster = Get-QcowCluster $Path -Offset $VirtualOffset -Length 1
        $entry = @(Get-QcowTable $Path L2 -Index $cluster.L1Index | Where-Object Index -eq $cluster.L2Index)
        if ($entry.Count -ne 1) { throw "no L2 entry for guest offset $VirtualOffset in '$Path'" }
        return $entry[0]
    }
}

Describe 'New-QcowImage: provisioning disks' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        $elsewhere = New-QcowTestFolder -Prefix 'qcowps-pester-cwd'
        $n = 0
        function New-Name([string]$Stem = 'disk') { $script:n++; Join-Path $dir "$Stem-$script:n.qcow2" }
    }
    AfterAll {
        Remove-QcowTestFolder $dir
        Remove-QcowTestFolder $elsewhere
    }

    It 'sizes as <Label> give a <Expected>-byte disk that qemu-img accepts' -ForEach @(
        @{ Label = 'a number'; Size = 1073741824; Expected = 1073741824 }
        @{ Label = 'the literal 10GB'; Size = 10GB; Expected = 10737418240 }
        @{ Label = 'the string ''1T'''; Size = '1T'; Expected = 1099511627776 }
        @{ Label = 'the string ''512K'''; Size = '512K'; Expected = 524288 }
        @{ Label = 'the string ''1.5G'''; Size = '1.5G'; Expected = 1610612736 }
        @{ Label = 'the string ''20GiB'''; Size = '20GiB'; Expected = 21474836480 }
        @{ Label = 'a size not a multiple of 512 (rounded up, as qemu-img create does)'; Size = 1000001; Expected = 1000448 }
    ) {
        $path = New-Name
        $info = New-QcowImage -Path $path -Size $Size
        $info | Should -BeOfType ([QcowPS.QcowImageInfo])
        $info.Path | Should -Be $path
        $info.VirtualSize | Should -Be $Expected
        $q = Get-QemuImageInfo $path
        $q.format | Should -Be 'qcow2'
        $q.'virtual-size' | Should -Be $Expected
        # The defaults are qemu-img create's: v3 (compat 1.1), 64 KiB clusters, 16-bit refcounts, zlib.
        $q.'cluster-size' | Should -Be 65536
        $q.'format-specific'.data.compat | Should -Be '1.1'
        $q.'format-specific'.data.'refcount-bits' | Should -Be 16
        $q.'format-specific'.data.'lazy-refcounts' | Should -BeFalse
        $q.'format-specific'.data.'compression-type' | Should -Be 'zlib'
        $check = Get-QemuCheck $path
        $check.ExitCode | Should -Be 0 -Because ($check.Messages -join '; ')
        $check.TotalClusters | Should -Be ([Math]::Ceiling($Expected / 65536))
    }

    It '<Label> is what qemu-img info reports, and QEMU can write to the image' -ForEach @(
        @{ Label = '-Version 2'; Params = @{ Version = 2 }; Compat = '0.10' }
        @{ Label = '-ClusterSize 512'; Params = @{ ClusterSize = 512 }; Cluster = 512 }
        @{ Label = '-ClusterSize 4K'; Params = @{ ClusterSize = '4K' }; Cluster = 4096 }
        @{ Label = '-ClusterSize 2MB'; Params = @{ ClusterSize = 2MB }; Cluster = 2097152 }
        @{ Label = '-RefcountBits 1'; Params = @{ RefcountBits = 1 }; Refcount = 1 }
        @{ Label = '-RefcountBits 64'; Params = @{ RefcountBits = 64 }; Refcount = 64 }
        @{ Label = '-LazyRefcounts'; Params = @{ LazyRefcounts = $true }; Lazy = $true }
        @{ Label = '-ExtendedL2'; Params = @{ ExtendedL2 = $true }; ExtendedL2 = $true }
        @{ Label = '-CompressionType Zstd'; Params = @{ CompressionType = 'Zstd' }; Compression = 'zstd' }
        @{ Label = 'all v3 options at once'; Params = @{ ClusterSize = 128KB; RefcountBits = 8; LazyRefcounts = $true; ExtendedL2 = $true; CompressionType = 'Zstd' }
            Cluster = 131072; Refcount = 8; Lazy = $true; ExtendedL2 = $true; Compression = 'zstd' }
    ) {
        $expected = @{
            Compat = if ($Compat) { $Compat } else { '1.1' }
            Cluster = if ($Cluster) { $Cluster } else { 65536 }
            Refcount = if ($Refcount) { $Refcount } else { 16 }
            Lazy = [bool]$Lazy
            ExtendedL2 = [bool]$ExtendedL2
            Compression = if ($Compression) { $Compression } else { 'zlib' }
        }
        $path = New-Name 'options'
        $info = New-QcowImage -Path $path -Size 64MB @Params
        $q = Get-QemuImageInfo $path
        $d = $q.'format-specific'.data
        $q.'virtual-size' | Should -Be 64MB
        $q.'cluster-size' | Should -Be $expected.Cluster
        $d.compat | Should -Be $expected.Compat
        $d.'refcount-bits' | Should -Be $expected.Refcount
        [bool]$d.'lazy-refcounts' | Should -Be $expected.Lazy
        [bool]$d.'extended-l2' | Should -Be $expected.ExtendedL2
        # Asserted for v2 too: a v2 header has no compression-type field, and qemu-img reports its implied zlib.
        $d.'compression-type' | Should -Be $expected.Compression
        # The object New-QcowImage returns says the same.
        $info.VirtualSize | Should -Be 64MB
        $info.ClusterSize | Should -Be $expected.Cluster
        $info.Version | Should -Be $(if ($expected.Compat -eq '0.10') { 2 } else { 3 })
        $info.RefcountBits | Should -Be $expected.Refcount
        $info.LazyRefcounts | Should -Be $expected.Lazy
        $info.ExtendedL2 | Should -Be $expected.ExtendedL2
        "$($info.CompressionType)" | Should -Be $expected.Compression
        (Get-QemuCheck $path).ExitCode | Should -Be 0

        # QEMU uses the image: writes across cluster boundaries and zeroes a cluster, then checks it.
        Invoke-QemuIo $path 'write -P 0x5a 1000 300000', 'write -z 8M 64k'
        Get-QemuIoPatternMismatch $path '0x5a 1000 300000', '0 0 1000', '0 301000 4096' | Should -BeNullOrEmpty
        $check = Get-QemuCheck $path
        $check.ExitCode | Should -Be 0 -Because ($check.Messages -join '; ')
        Get-BytesHash (Read-QcowBlock $path 1000 300000 -Raw) | Should -Be (Get-BytesHash (New-FilledBytes 300000 0x5a))
    }

    It '-BackingFile takes the size from the backing file, records it and its format, and reads through to it' {
        $base = New-QemuImage -Path (Join-Path $dir 'golden.qcow2') -Size 24M -Write 'write -P 0x11 0 1M', 'write -P 0x12 20M 64k'
        $overlay = Join-Path $dir 'clone-01.qcow2'
        $info = New-QcowImage -Path $overlay -BackingFile 'golden.qcow2' -BackingFormat qcow2
        $info.VirtualSize | Should -Be 24MB
        $info.BackingFile | Should -Be 'golden.qcow2'
        $info.BackingFormat | Should -Be 'qcow2'
        $q = Get-QemuImageInfo $overlay
        $q.'virtual-size' | Should -Be 24MB
        $q.'backing-filename' | Should -Be 'golden.qcow2'
        $q.'backing-filename-format' | Should -Be 'qcow2'
        $q.'full-backing-filename' | Should -Be $base
        (Get-QemuCheck $overlay).ExitCode | Should -Be 0
        # Nothing is allocated in the overlay; the guest sees the golden image.
        (Get-QemuMap $overlay | Where-Object depth -eq 0) | Should -BeNullOrEmpty
        $expected = Export-QemuRaw -Path $base -Destination (Join-Path $dir 'golden.raw')
        $actual = Export-QemuRaw -Path $overlay -Destination (Join-Path $dir 'clone-01.raw')
        (Get-FileHash -LiteralPath $actual).Hash | Should -Be (Get-FileHash -LiteralPath $expected).Hash
    }

    It '-BackingFile without -BackingFormat probes a qcow2 backing file and records qcow2' {
        New-QemuImage -Path (Join-Path $dir 'probe-base.qcow2') -Size 3M | Out-Null
        $overlay = Join-Path $dir 'probe-top.qcow2'
        New-QcowImage -Path $overlay -BackingFile 'probe-base.qcow2' | Out-Null
        $q = Get-QemuImageInfo $overlay
        $q.'backing-filename-format' | Should -Be 'qcow2'
        $q.'virtual-size' | Should -Be 3MB
    }

    It '-BackingFormat raw over a raw file; without it a raw backing file is an error and nothing is created' {
        $raw = New-QemuImage -Path (Join-Path $dir 'base.raw') -Size 2M -Format raw -Write 'write -P 0x33 0 64k' 
        $bad = Join-Path $dir 'raw-top-unprobed.qcow2'
        New-QcowImage -Path $bad -BackingFile 'base.raw' -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Get-ErrorIds $err | Should -Be 'QcowPS.InvalidArgument'
        $bad | Should -Not -Exist

        $top = Join-Path $dir 'raw-top.qcow2'
        New-QcowImage -Path $top -BackingFile 'base.raw' -BackingFormat raw | Out-Null
        $q = Get-QemuImageInfo $top
        $q.'backing-filename-format' | Should -Be 'raw'
        $q.'virtual-size' | Should -Be 2MB
        Get-QemuIoPatternMismatch $top '0x33 0 64k', '0 64k 64k' | Should -BeNullOrEmpty
    }

    It '-Size with -BackingFile makes a larger disk; the part past the backing file reads as zeros' {
        New-QemuImage -Path (Join-Path $dir 'small-base.qcow2') -Size 1M -Write 'write -P 0x44 0 1M' | Out-Null
        $top = Join-Path $dir 'bigger-top.qcow2'
        (New-QcowImage -Path $top -Size 4MB -BackingFile 'small-base.qcow2' -BackingFormat qcow2).VirtualSize | Should -Be 4MB
        (Get-QemuImageInfo $top).'virtual-size' | Should -Be 4MB
        Get-QemuIoPatternMismatch $top '0x44 0 1M', '0 1M 3M' | Should -BeNullOrEmpty
    }

    It 'a missing backing file with no -Size is QcowPS.FileNotFound and creates nothing' {
        $top = Join-Path $dir 'orphan.qcow2'
        New-QcowImage -Path $top -BackingFile 'no-such-base.qcow2' -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Get-ErrorIds $err | Should -Be 'QcowPS.FileNotFound'
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $top | Should -Not -Exist
    }

    It '-Preallocation Metadata allocates every cluster without writing data' {
        $path = New-Name 'prealloc-metadata'
        New-QcowImage -Path $path -Size 4MB -Preallocation Metadata | Out-Null
        $check = Get-QemuCheck $path
        $check.ExitCode | Should -Be 0
        $check.AllocatedClusters | Should -Be 64
        $check.TotalClusters | Should -Be 64
        $map = @(Get-QemuMap $path)
        $map | Should -HaveCount 1
        $map[0].length | Should -Be 4MB
        $map[0].data | Should -BeTrue
        (Get-QemuImageInfo $path).'actual-size' | Should -BeLessThan 1MB -Because 'metadata preallocation leaves the data sparse'
        Get-QemuIoPatternMismatch $path '0 0 4M' | Should -BeNullOrEmpty
        @(Get-QcowCluster $path).ClusterType | Select-Object -Unique | Should -Be 'Normal'
    }

    It '-Preallocation Full writes every data cluster' {
        $path = New-Name 'prealloc-full'
        New-QcowImage -Path $path -Size 4MB -Preallocation Full | Out-Null
        $check = Get-QemuCheck $path
        $check.ExitCode | Should -Be 0
        $check.AllocatedClusters | Should -Be 64
        (Get-QemuImageInfo $path).'actual-size' | Should -BeGreaterOrEqual 4MB
        $map = @(Get-QemuMap $path)
        $map | Should -HaveCount 1
        $map[0].data | Should -BeTrue
        $map[0].zero | Should -BeFalse -Because 'the zeros are written, not left as holes'
        Get-QemuIoPatternMismatch $path '0 0 4M' | Should -BeNullOrEmpty
    }

    It 'never replaces an existing file without -Force: QcowPS.FileExists / ResourceExists, content unchanged' {
        $path = New-QemuImage -Path (Join-Path $dir 'precious.qcow2') -Size 8M -Write 'write -P 0x77 0 64k'
        $hash = Get-Hash $path
        New-QcowImage -Path $path -Size 2MB -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.FileExists,*'
        $err[0].CategoryInfo.Category | Should -Be ([System.Management.Automation.ErrorCategory]::ResourceExists)
        Get-Hash $path | Should -Be $hash
        # -ErrorAction Stop makes it catchable in a runbook.
        { New-QcowImage -Path $path -Size 2MB -ErrorAction Stop } | Should -Throw -ErrorId 'QcowPS.FileExists,*'
        Get-Hash $path | Should -Be $hash
        # A file that is not an image is protected too.
        $notes = Join-Path $dir 'notes.txt'
        Set-Content -LiteralPath $notes -Value 'keep me'
        New-QcowImage -Path $notes -Size 1MB -ErrorAction SilentlyContinue | Out-Null
        Get-Content -LiteralPath $notes | Should -Be 'keep me'
    }

    It 'replaces an existing file with -Force' {
        $path = New-QemuImage -Path (Join-Path $dir 'scratch.qcow2') -Size 8M -Write 'write -P 0x77 0 64k'
        Invoke-QemuImg 'snapshot', '-c', 'old', $path | Out-Null
        $info = New-QcowImage -Path $path -Size 2MB -Force
        $info.VirtualSize | Should -Be 2MB
        $info.SnapshotCount | Should -Be 0
        $q = Get-QemuImageInfo $path
        $q.'virtual-size' | Should -Be 2MB
        $q.PSObject.Properties.Name | Should -Not -Contain 'snapshots'
        Get-QemuIoPatternMismatch $path '0 0 64k' | Should -BeNullOrEmpty
        (Get-QemuCheck $path).ExitCode | Should -Be 0
        # No temporary file is left next to it.
        @(Get-ChildItem -LiteralPath $dir -Force -Filter '.scratch.qcow2*') | Should -HaveCount 0
    }

    It '-WhatIf creates nothing, and with -Force leaves an existing file byte-identical' {
        $path = Join-Path $dir 'whatif-new.qcow2'
        $out = New-QcowImage -Path $path -Size 1GB -WhatIf
        $out | Should -BeNullOrEmpty
        $path | Should -Not -Exist
        $existing = New-QemuImage -Path (Join-Path $dir 'whatif-existing.qcow2') -Size 8M -Write 'write -P 0x21 0 64k'
        $hash = Get-Hash $existing
        New-QcowImage -Path $existing -Size 1MB -Force -WhatIf | Should -BeNullOrEmpty
        Get-Hash $existing | Should -Be $hash
    }

    It 'New-QcowImage huge.qcow2 -Size <Label> -ClusterSize 2MB: 1 EiB, the same file size as qemu-img create' -ForEach @(
        @{ Label = '''1EB'''; Size = '1EB' }
        @{ Label = '1024PB'; Size = 1024PB }
    ) {
        $reference = Join-Path $dir 'huge-by-qemu.qcow2'
        if (-not (Test-Path -LiteralPath $reference)) {
            Invoke-QemuImg 'create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M', $reference, '1048576T' | Out-Null
        }
        Push-Location -LiteralPath $dir
        try {
            Remove-Item -LiteralPath (Join-Path $dir 'huge.qcow2') -ErrorAction Ignore
            $info = New-QcowImage huge.qcow2 -Size $Size -ClusterSize 2MB
        } finally {
            Pop-Location
        }
        $path = Join-Path $dir 'huge.qcow2'
        $info.VirtualSize | Should -Be 1152921504606846976
        $q = Get-QemuImageInfo $path
        $q.'virtual-size' | Should -Be 1152921504606846976
        $q.'cluster-size' | Should -Be 2097152
        (Get-Item -LiteralPath $path).Length | Should -Be (Get-Item -LiteralPath $reference).Length
        $check = Get-QemuCheck $path
        $check.ExitCode | Should -Be 0
        $check.TotalClusters | Should -Be (1152921504606846976 / 2097152)
    }

    It 'a size too large for <Cluster> clusters names <Smallest>, the smallest cluster size that works (qemu-img agrees)' -ForEach @(
        @{ Size = 1024PB; Cluster = '64K'; Smallest = '2 MiB'; QemuSize = '1048576T'; QemuWorks = '2M'; QemuFails = '1M' }
        @{ Size = 256TB; Cluster = '4K'; Smallest = '32 KiB'; QemuSize = '256T'; QemuWorks = '32K'; QemuFails = '16K' }
    ) {
        $path = Join-Path $dir 'too-large.qcow2'
        New-QcowImage -Path $path -Size $Size -ClusterSize $Cluster -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.InvalidArgument,*'
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        $err[0].Exception.Message | Should -BeLike "*smallest cluster size*$Smallest*"
        $path | Should -Not -Exist
        @(Get-ChildItem -LiteralPath $dir -Force -Filter '.too-large*') | Should -HaveCount 0

        # The advice is right: qemu-img takes the named cluster size and refuses the next smaller one.
        $q = Join-Path $dir 'too-large-qemu.qcow2'
        { Invoke-QemuImg 'create', '-q', '-f', 'qcow2', '-o', "cluster_size=$QemuFails", $q, $QemuSize } | Should -Throw
        Invoke-QemuImg 'create', '-q', '-f', 'qcow2', '-o', "cluster_size=$QemuWorks", $q, $QemuSize | Out-Null
        Remove-Item -LiteralPath $q
        # And so do we.
        (New-QcowImage -Path $path -Size $Size -ClusterSize $QemuWorks).VirtualSize | Should -Be $Size
        (Get-QemuCheck $path).ExitCode | Should -Be 0
        Remove-Item -LiteralPath $path
    }

    It 'relative paths resolve against $PWD, not the process''s current directory' {
        $sub = New-Item -ItemType Directory -Path (Join-Path $dir 'pwd-test') -Force
        $saved = [Environment]::CurrentDirectory
        [Environment]::CurrentDirectory = $elsewhere
        Push-Location -LiteralPath $sub.FullName
        try {
            $a = New-QcowImage rel.qcow2 -Size 1MB
            $c = New-QcowImage ../rel-parent.qcow2 -Size 3MB
        } finally {
            Pop-Location
            [Environment]::CurrentDirectory = $saved
        }
        $a.Path | Should -Be (Join-Path $sub.FullName 'rel.qcow2')
        (Join-Path $sub.FullName 'rel.qcow2') | Should -Exist
        (Join-Path $elsewhere 'rel.qcow2') | Should -Not -Exist
        $c.Path | Should -Be (Join-Path $dir 'rel-parent.qcow2')
        (Get-QemuImageInfo $c.Path).'virtual-size' | Should -Be 3MB
        @(Get-ChildItem -LiteralPath $elsewhere) | Should -HaveCount 0
    }

    It 'a relative -BackingFile is stored as given and resolved against the new image''s folder' {
        $base = New-QemuImage -Path (Join-Path $dir 'shared-base.qcow2') -Size 5M -Write 'write -P 0x66 0 64k'
        New-Item -ItemType Directory -Path (Join-Path $dir 'vms') -Force | Out-Null
        Push-Location -LiteralPath $dir
        try {
            $info = New-QcowImage vms/vm-01.qcow2 -BackingFile ../shared-base.qcow2 -BackingFormat qcow2
        } finally {
            Pop-Location
        }
        $top = Join-Path $dir 'vms/vm-01.qcow2'
        $info.Path | Should -Be $top
        $info.VirtualSize | Should -Be 5MB
        $q = Get-QemuImageInfo $top
        $q.'backing-filename' | Should -Be '../shared-base.qcow2'
        [IO.Path]::GetFullPath($q.'full-backing-filename', $dir) | Should -Be $base
        Get-QemuIoPatternMismatch $top '0x66 0 64k' | Should -BeNullOrEmpty
    }

    It 'provisions from a CSV plan: Path and Size columns bind by property name' {
        $plan = Join-Path $dir 'plan.csv'
        @(
            [pscustomobject]@{ Path = (Join-Path $dir 'web-01.qcow2'); Size = '20G' }
            [pscustomobject]@{ Path = (Join-Path $dir 'db-01.qcow2'); Size = '512M' }
            [pscustomobject]@{ Path = (Join-Path $dir 'log-01.qcow2'); Size = '1073741824' }
        ) | Export-Csv -LiteralPath $plan -NoTypeInformation
        $made = @(Import-Csv -LiteralPath $plan | New-QcowImage)
        $made | Should -HaveCount 3
        $made.VirtualSize | Should -Be @(20GB, 512MB, 1GB)
        foreach ($m in $made) {
            (Get-QemuImageInfo $m.Path).'virtual-size' | Should -Be $m.VirtualSize
        }
        # Names from the pipeline, one size for all.
        $names = 'node-1', 'node-2' | ForEach-Object { Join-Path $dir "$_.qcow2" }
        @($names | New-QcowImage -Size 4GB).VirtualSize | Should -Be @(4GB, 4GB)
    }

    It 'options QEMU cannot combine are a QcowPS.InvalidArgument error and create nothing: <Label>' -ForEach @(
        @{ Label = '-Version 2 -LazyRefcounts'; Params = @{ Version = 2; LazyRefcounts = $true } }
        @{ Label = '-Version 2 -RefcountBits 64'; Params = @{ Version = 2; RefcountBits = 64 } }
        @{ Label = '-Version 2 -CompressionType Zstd'; Params = @{ Version = 2; CompressionType = 'Zstd' } }
        @{ Label = '-ExtendedL2 -ClusterSize 4K'; Params = @{ ExtendedL2 = $true; ClusterSize = 4KB } }
    ) {
        $path = Join-Path $dir 'invalid-combination.qcow2'
        New-QcowImage -Path $path -Size 1MB @Params -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Get-ErrorIds $err | Should -Be 'QcowPS.InvalidArgument'
        $path | Should -Not -Exist
    }

    It 'a cluster size that is not a power of two from 512 to 2M is a parameter binding error' {
        { New-QcowImage -Path (Join-Path $dir 'bad-cluster.qcow2') -Size 1MB -ClusterSize 3000 -ErrorAction SilentlyContinue } |
            Should -Throw -ExceptionType ([System.Management.Automation.ParameterBindingException])
        { New-QcowImage -Path (Join-Path $dir 'bad-cluster.qcow2') -Size 1MB -ClusterSize 4MB -ErrorAction SilentlyContinue } |
            Should -Throw -ExceptionType ([System.Management.Automation.ParameterBindingException])
        (Join-Path $dir 'bad-cluster.qcow2') | Should -Not -Exist
    }
}

Describe 'Write-QcowBlock: patching guest data' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        $elsewhere = New-QcowTestFolder -Prefix 'qcowps-pester-cwd'
    }
    AfterAll {
        Remove-QcowTestFolder $dir
        Remove-QcowTestFolder $elsewhere
    }

    It '-Data writes exactly the bytes given, across a cluster boundary, and nothing else' {
        $img = New-QemuImage -Path (Join-Path $dir 'data.qcow2') -Size 4M -Write 'write -P 0x11 0 256k'
        $bytes = New-RandomBytes -Length 10000 -Seed 7
        $out = Write-QcowBlock $img 60000 $bytes
        $out | Should -BeNullOrEmpty -Because 'without -PassThru nothing is returned'
        $raw = Export-QemuRaw -Path $img -Destination (Join-Path $dir 'data.raw')
        Get-BytesHash (Get-FileBytes $raw -Offset 60000 -Length 10000) | Should -Be (Get-BytesHash $bytes)
        Get-QemuIoPatternMismatch $img '0x11 0 60000', '0x11 70000 192144', '0 256k 3840k' | Should -BeNullOrEmpty
        (Get-QemuCheck $img).ExitCode | Should -Be 0
    }

    It 'a byte[] piped in (<Label>) is written as one block at -Offset' -ForEach @(
        @{ Label = 'unrolled: $bytes | Write-QcowBlock'; Wrap = $false; Offset = 65000 }
        @{ Label = 'whole: ,$bytes | Write-QcowBlock'; Wrap = $true; Offset = 131000 }
    ) {
        $img = New-QemuImage -Path (Join-Path $dir "piped-$Wrap.qcow2") -Size 1M
        $bytes = New-RandomBytes -Length 3000 -Seed 11
        if ($Wrap) { , $bytes | Write-QcowBlock $img -Offset $Offset } else { $bytes | Write-QcowBlock $img -Offset $Offset }
        $raw = Export-QemuRaw -Path $img -Destination (Join-Path $dir "piped-$Wrap.raw")
        Get-BytesHash (Get-FileBytes $raw -Offset $Offset -Length 3000) | Should -Be (Get-BytesHash $bytes)
        Get-QemuIoPatternMismatch $img "0 0 $Offset", "0 $($Offset + 3000) $(1MB - $Offset - 3000)" | Should -BeNullOrEmpty
        (Get-QemuCheck $img).ExitCode | Should -Be 0
    }

    It 'copies data inside an image and between images: Read-QcowBlock -Raw | Write-QcowBlock' {
        $src = New-QemuImage -Path (Join-Path $dir 'boot-src.qcow2') -Size 2M -Write 'write -P 0xeb 0 512', 'write -P 0x90 512 64k'
        $dst = New-QemuImage -Path (Join-Path $dir 'boot-dst.qcow2') -Size 2M
        Read-QcowBlock $src 0 512 -Raw | Write-QcowBlock $dst -Offset 0
        Read-QcowBlock $src 0 64K -Raw | Write-QcowBlock $src -Offset 1M
        Get-QemuIoPatternMismatch $dst '0xeb 0 512', '0 512 64k' | Should -BeNullOrEmpty
        Get-QemuIoPatternMismatch $src '0xeb 1M 512', '0x90 1049088 65024' | Should -BeNullOrEmpty
        (Get-QemuCheck $src).ExitCode | Should -Be 0
        (Get-QemuCheck $dst).ExitCode | Should -Be 0
    }

    It '-InputFile (a path relative to $PWD) writes the file, zero runs included' {
        $img = New-QemuImage -Path (Join-Path $dir 'input.qcow2') -Size 4M -Write 'write -P 0xff 0 4M'
        # 200000 bytes: random, then a cluster-aligned 64 KiB run of zeros, then random again.
        $content = New-RandomBytes -Length 200000 -Seed 3
        [Array]::Clear($content, 65536 - 4096, 65536)
        [IO.File]::WriteAllBytes((Join-Path $dir 'payload.bin'), $content)
        $saved = [Environment]::CurrentDirectory
        [Environment]::CurrentDirectory = $elsewhere
        Push-Location -LiteralPath $dir
        try {
            Write-QcowBlock input.qcow2 -Offset 4096 -InputFile payload.bin
        } finally {
            Pop-Location
            [Environment]::CurrentDirectory = $saved
        }
        $raw = Export-QemuRaw -Path $img -Destination (Join-Path $dir 'input.raw')
        Get-BytesHash (Get-FileBytes $raw -Offset 4096 -Length 200000) | Should -Be (Get-BytesHash $content)
        Get-QemuIoPatternMismatch $img '0xff 0 4096', '0 64k 64k', '0xff 204096 3990208' | Should -BeNullOrEmpty
        (Get-QemuCheck $img).ExitCode | Should -Be 0
    }

    It '-Zero -Length zeroes a range: whole clusters become zero clusters, partial ones are written' {
        $img = New-QemuImage -Path (Join-Path $dir 'zero.qcow2') -Size 1M -Write 'write -P 0x5a 0 1M'
        Write-QcowBlock $img -Offset 60K -Zero -Length '136K'
        Get-QemuIoPatternMismatch $img '0x5a 0 60k', '0 60k 136k', '0x5a 196k 828k' | Should -BeNullOrEmpty
        # 64k-192k are whole clusters: qemu-img map reports them as zero.
        $zeroRun = Get-QemuMap $img | Where-Object { $_.start -le 64KB -and 64KB -lt $_.start + $_.length }
        $zeroRun.zero | Should -BeTrue
        $zeroRun.start + $zeroRun.length | Should -BeGreaterOrEqual 192KB
        (Get-QemuCheck $img).ExitCode | Should -Be 0
    }

    It '-PassThru returns the written range as QcowBlock pieces holding the new data' {
        $img = New-QemuImage -Path (Join-Path $dir 'passthru.qcow2') -Size 1M
        $bytes = New-RandomBytes -Length 100000 -Seed 5
        $blocks = @(Write-QcowBlock $img -Offset 50000 -Data $bytes -PassThru)
        $blocks.Count | Should -BeGreaterThan 1
        $blocks[0].Offset | Should -Be 50000
        $next = 50000
        $joined = [IO.MemoryStream]::new()
        foreach ($b in $blocks) {
            $b | Should -BeOfType ([QcowPS.QcowBlock])
            $b.Path | Should -Be $img
            $b.Offset | Should -Be $next
            $b.Length | Should -BeLessOrEqual 65536
            "$($b.ClusterType)" | Should -Be 'Normal'
            $b.HostOffset | Should -Not -BeNullOrEmpty
            $joined.Write($b.Data, 0, $b.Data.Length)
            $next += $b.Length
        }
        $next | Should -Be 150000
        Get-BytesHash $joined.ToArray() | Should -Be (Get-BytesHash $bytes)
        # Host offsets agree with qemu-img map.
        foreach ($m in Get-QemuMap $img | Where-Object data) {
            $b = $blocks | Where-Object { $_.Offset -le $m.start -and $m.start -lt $_.Offset + $_.Length } | Select-Object -First 1
            if ($b) { $b.HostOffset - ($b.Offset - $m.start) | Should -Be $m.offset }
        }
        $zeros = @(Write-QcowBlock $img -Offset 0 -Zero -Length 64KB -PassThru)
        $zeros | Should -HaveCount 1
        "$($zeros[0].ClusterType)" | Should -BeIn 'Zero', 'ZeroAllocated'
        Get-BytesHash $zeros[0].Data | Should -Be (Get-BytesHash (New-FilledBytes 65536 0))
    }

    It 'over a backing file, the untouched parts of a cluster still read from the backing file; the backing file is not changed' {
        $base = New-QemuImage -Path (Join-Path $dir 'cow-base.qcow2') -Size 3M -Write 'write -P 0x11 0 3M'
        $baseHash = Get-Hash $base
        $top = Join-Path $dir 'cow-top.qcow2'
        New-QcowImage -Path $top -BackingFile 'cow-base.qcow2' -BackingFormat qcow2 | Out-Null
        Write-QcowBlock $top -Offset 1000 -Data (New-FilledBytes 100 0x22)
        Write-QcowBlock $top -Offset 1M -Zero -Length 64KB
        Write-QcowBlock $top -Offset 2MB -Zero -Length 100
        Get-QemuIoPatternMismatch $top @(
            '0x11 0 1000', '0x22 1000 100', '0x11 1100 64436', '0x11 64k 960k',
            '0 1M 64k', '0x11 1088k 960k', '0 2M 100', '0x11 2097252 1048476') | Should -BeNullOrEmpty
        $map = @(Get-QemuMap $top)
        ($map | Where-Object { $_.start -eq 0 }).depth | Should -Be 0
        ($map | Where-Object { $_.start -eq 64KB }).depth | Should -Be 1
        Get-Hash $base | Should -Be $baseHash
        (Get-QemuCheck $top).ExitCode | Should -Be 0
    }

    It 'a write into a compressed cluster keeps the rest of the cluster' {
        $plain = New-QemuImage -Path (Join-Path $dir 'to-compress.qcow2') -Size 1M -Write 'write -P 0x41 0 256k'
        $img = Join-Path $dir 'compressed.qcow2'
        Invoke-QemuImg 'convert', '-c', '-O', 'qcow2', $plain, $img | Out-Null
        (Get-QemuCheck $img).CompressedClusters | Should -BeGreaterThan 0
        Write-QcowBlock $img -Offset 70000 -Data (New-FilledBytes 500 0x42)
        Get-QemuIoPatternMismatch $img '0x41 0 70000', '0x42 70000 500', '0x41 70500 191644', '0 256k 768k' | Should -BeNullOrEmpty
        (Get-QemuCheck $img).ExitCode | Should -Be 0
        "$((Get-QcowCluster $img -Offset 64K -Length 1).ClusterType)" | Should -Be 'Normal'
    }

    It 'writing past the end (<Label>) is QcowPS.InvalidArgument and changes nothing' -ForEach @(
        @{ Label = 'offset at the end'; Params = @{ Offset = 4MB; Data = [byte[]](1) } }
        @{ Label = 'a range that crosses the end'; Params = @{ Offset = 4MB - 10; Data = (New-FilledBytes 100 1) } }
        @{ Label = 'offset far beyond the end'; Params = @{ Offset = 1TB; Data = [byte[]](1, 2, 3) } }
        @{ Label = '-Zero across the end'; Params = @{ Offset = 4MB - 4KB; Zero = $true; Length = 8KB } }
    ) {
        $img = New-QemuImage -Path (Join-Path $dir 'end.qcow2') -Size 4M -Write 'write -P 0x31 4032k 64k'
        $hash = Get-Hash $img
        Write-QcowBlock -Path $img @Params -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.InvalidArgument,*'
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        Get-Hash $img | Should -Be $hash
        Remove-Item -LiteralPath $img
    }

    It '-InputFile longer than the rest of the disk is an error and changes nothing' {
        $img = New-QemuImage -Path (Join-Path $dir 'small.qcow2') -Size 64K
        [IO.File]::WriteAllBytes((Join-Path $dir 'too-long.bin'), (New-FilledBytes 70000 0x12))
        $hash = Get-Hash $img
        Write-QcowBlock $img -InputFile (Join-Path $dir 'too-long.bin') -ErrorVariable err -ErrorAction SilentlyContinue
        Get-ErrorIds $err | Should -Be 'QcowPS.InvalidArgument'
        Get-Hash $img | Should -Be $hash
    }

    It 'an image that a running qemu-io holds is QcowPS.ImageInUse / ResourceBusy, and left alone' -Skip:(-not $IsLinux) {
        $img = New-QemuImage -Path (Join-Path $dir 'running-vm.qcow2') -Size 1M -Write 'write -P 0x61 0 64k'
        $qemu = Start-QemuIoHolder $img
        try {
            $hash = Get-Hash $img
            Write-QcowBlock $img -Offset 0 -Data (New-FilledBytes 512 0x62) -ErrorVariable err -ErrorAction SilentlyContinue
            $err | Should -HaveCount 1
            $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.ImageInUse,*'
            $err[0].CategoryInfo.Category | Should -Be 'ResourceBusy'
            Get-Hash $img | Should -Be $hash
        } finally {
            Stop-QemuIoHolder $qemu
        }
        Get-QemuIoPatternMismatch $img '0x61 0 64k' | Should -BeNullOrEmpty
        Write-QcowBlock $img -Offset 0 -Data (New-FilledBytes 512 0x62)
        Get-QemuIoPatternMismatch $img '0x62 0 512' | Should -BeNullOrEmpty -Because 'the write goes through once QEMU has let go'
    }

    It 'an image QcowPS itself has open (<Mode>) is QcowPS.ImageInUse' -Skip:(-not $IsLinux) -ForEach @(
        @{ Mode = 'for writing'; Writable = $true }
        @{ Mode = 'for reading'; Writable = $false }
    ) {
        $img = New-QemuImage -Path (Join-Path $dir "own-open-$Writable.qcow2") -Size 1M
        $hash = Get-Hash $img
        $held = [QcowPS.Engine.DiskImage]::Open($img, [QcowPS.Engine.OpenOptions]@{ Writable = $Writable })
        try {
            Write-QcowBlock $img -Offset 0 -Data ([byte[]](1, 2, 3)) -ErrorVariable err -ErrorAction SilentlyContinue
            Get-ErrorIds $err | Should -Be 'QcowPS.ImageInUse'
            $err[0].CategoryInfo.Category | Should -Be 'ResourceBusy'
        } finally {
            $held.Dispose()
        }
        Get-Hash $img | Should -Be $hash
        Write-QcowBlock $img -Offset 0 -Data ([byte[]](1, 2, 3))
        Get-QemuIoPatternMismatch $img '1 0 1', '2 1 1', '3 2 1' | Should -BeNullOrEmpty
    }

    It '-Path takes a wildcard that names one image; one that names two is a terminating error' {
        $one = New-QemuImage -Path (Join-Path $dir 'wild-alpha.qcow2') -Size 1M
        New-QemuImage -Path (Join-Path $dir 'wild-beta.qcow2') -Size 1M | Out-Null
        Write-QcowBlock (Join-Path $dir 'wild-al*.qcow2') -Offset 0 -Data (New-FilledBytes 16 0x71)
        Get-QemuIoPatternMismatch $one '0x71 0 16' | Should -BeNullOrEmpty
        $hashes = Get-ChildItem -LiteralPath $dir -Filter 'wild-*.qcow2' | Get-FileHash
        { Write-QcowBlock (Join-Path $dir 'wild-*.qcow2') -Offset 0 -Data (New-FilledBytes 16 0x72) -ErrorAction SilentlyContinue } |
            Should -Throw -ErrorId 'QcowPS.OneImageOnly,*'
        (Get-ChildItem -LiteralPath $dir -Filter 'wild-*.qcow2' | Get-FileHash).Hash | Should -Be $hashes.Hash
    }

    It 'a missing image is QcowPS.FileNotFound and creates no file' {
        $missing = Join-Path $dir 'not-there.qcow2'
        Write-QcowBlock $missing -Offset 0 -Data ([byte[]](1)) -ErrorVariable err -ErrorAction SilentlyContinue
        Get-ErrorIds $err | Should -Be 'QcowPS.FileNotFound'
        $missing | Should -Not -Exist
    }
}

Describe 'Snapshots: New-, Restore- and Remove-QcowSnapshot' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        function Get-RawHash([string]$Path, [string]$SnapshotName) {
            $raw = Join-Path $dir ('export-' + [Guid]::NewGuid().ToString('N') + '.raw')
            Export-QemuRaw -Path $Path -Destination $raw -SnapshotName $SnapshotName | Out-Null
            try { (Get-FileHash -LiteralPath $raw).Hash } finally { Remove-Item -LiteralPath $raw }
        }
        function Get-QemuSnapshotNames([string]$Path) {
            $q = Get-QemuImageInfo $Path
            if ($q.PSObject.Properties.Name -contains 'snapshots') { @($q.snapshots.name) } else { @() }
        }
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'runbook: snapshot before patching, patch, roll back with Get-QcowSnapshot | Restore-QcowSnapshot' {
        $img = New-QemuImage -Path (Join-Path $dir 'app.qcow2') -Size 16M -Write 'write -P 0x11 0 1M', 'write -P 0x12 8M 64k'
        $before = Get-RawHash $img
        $started = [DateTime]::UtcNow

        $snap = New-QcowSnapshot -Path $img -Name 'pre-patch'
        $snap | Should -BeOfType ([QcowPS.QcowSnapshot])
        $snap.Path | Should -Be $img
        $snap.Name | Should -Be 'pre-patch'
        $snap.Id | Should -Be '1'
        $snap.DiskSize | Should -Be 16MB
        $snap.VmStateSize | Should -Be 0
        [Math]::Abs(($snap.Date - $started).TotalMinutes) | Should -BeLessThan 5
        $q = (Get-QemuImageInfo $img).snapshots
        @($q).Count | Should -Be 1
        $q[0].name | Should -Be 'pre-patch'
        $q[0].id | Should -Be '1'

        # The patch: new data, a zeroed range, and growth into unallocated space.
        Write-QcowBlock $img -Offset 512KB -Data (New-RandomBytes -Length 300000 -Seed 9)
        Write-QcowBlock $img -Offset 8MB -Zero -Length 64KB
        Write-QcowBlock $img -Offset 12MB -Data (New-FilledBytes 4096 0x13)
        Get-RawHash $img | Should -Not -Be $before

        $out = Get-QcowSnapshot $img -Name 'pre-patch' | Restore-QcowSnapshot -Confirm:$false
        $out | Should -BeNullOrEmpty
        Get-RawHash $img | Should -Be $before
        Get-QemuSnapshotNames $img | Should -Be @('pre-patch') -Because 'restoring keeps the snapshot'
        $check = Get-QemuCheck $img
        $check.ExitCode | Should -Be 0 -Because ($check.Messages -join '; ')
    }

    It 'QEMU reads and applies a snapshot that New-QcowSnapshot took' {
        $img = New-QemuImage -Path (Join-Path $dir 'ours.qcow2') -Size 4M -Write 'write -P 0x21 0 192k'
        $at = Get-RawHash $img
        New-QcowSnapshot $img 'ours' | Out-Null
        Invoke-QemuIo $img 'write -P 0x22 64k 64k', 'write -P 0x23 2M 64k'
        Get-RawHash $img -SnapshotName 'ours' | Should -Be $at
        Invoke-QemuImg 'snapshot', '-a', 'ours', $img | Out-Null
        Get-RawHash $img | Should -Be $at
        (Get-QemuCheck $img).ExitCode | Should -Be 0
    }

    It 'a snapshot QEMU took (qemu-img snapshot -c) is restored, then removed, by ours' {
        $img = New-QemuImage -Path (Join-Path $dir 'theirs.qcow2') -Size 4M -Write 'write -P 0x31 0 128k'
        Invoke-QemuImg 'snapshot', '-c', 'qemu-made', $img | Out-Null
        $at = Get-RawHash $img
        Invoke-QemuIo $img 'write -P 0x32 0 64k', 'write -z 64k 64k', 'write -P 0x33 3M 64k'
        Restore-QcowSnapshot $img -Name 'qemu-made' -Confirm:$false
        Get-RawHash $img | Should -Be $at
        (Get-QemuCheck $img).ExitCode | Should -Be 0
        Remove-QcowSnapshot $img -Name 'qemu-made' -Confirm:$false
        Get-QemuSnapshotNames $img | Should -HaveCount 0
        Get-RawHash $img | Should -Be $at
        $check = Get-QemuCheck $img
        $check.ExitCode | Should -Be 0
        $check.Leaks | Should -Be 0
        $check.AllocatedClusters | Should -Be 2
    }

    It 'Get-QcowSnapshot | Remove-QcowSnapshot removes every snapshot, ours and QEMU''s, and leaks nothing' {
        $img = New-QemuImage -Path (Join-Path $dir 'many.qcow2') -Size 8M -Write 'write -P 0x41 0 512k'
        New-QcowSnapshot $img 'daily-1' | Out-Null
        Invoke-QemuIo $img 'write -P 0x42 0 128k'
        Invoke-QemuImg 'snapshot', '-c', 'qemu-weekly', $img | Out-Null
        Write-QcowBlock $img -Offset 64KB -Data (New-FilledBytes 70000 0x43)
        New-QcowSnapshot $img 'daily-2' | Out-Null
        Write-QcowBlock $img -Offset 4MB -Data (New-FilledBytes 64KB 0x44)
        $now = Get-RawHash $img
        (Get-QemuSnapshotNames $img) | Should -Be @('daily-1', 'qemu-weekly', 'daily-2')

        Get-QcowSnapshot $img | Remove-QcowSnapshot -Confirm:$false
        Get-QcowSnapshot $img | Should -BeNullOrEmpty
        Get-QemuSnapshotNames $img | Should -HaveCount 0
        Get-RawHash $img | Should -Be $now
        $check = Get-QemuCheck $img
        $check.ExitCode | Should -Be 0 -Because ($check.Messages -join '; ')
        $check.Leaks | Should -Be 0
        $check.Corruptions | Should -Be 0
        $check.AllocatedClusters | Should -Be 9 -Because '512 KiB of data and one 64 KiB cluster at 4 MiB'
        # Nothing is shared any more: every data cluster is counted once and writable in place.
        $clusters = @(Get-QcowCluster $img -Allocated)
        $clusters.Refcount | Select-Object -Unique | Should -Be 1
        $clusters.Copied | Select-Object -Unique | Should -BeTrue
    }

    It 'Remove-QcowSnapshot -Id removes that snapshot only' {
        $img = New-QemuImage -Path (Join-Path $dir 'by-id.qcow2') -Size 1M -Write 'write -P 1 0 64k'
        New-QcowSnapshot $img 'first' | Out-Null
        $second = New-QcowSnapshot $img 'second'
        New-QcowSnapshot $img 'third' | Out-Null
        Remove-QcowSnapshot $img -Id $second.Id -Confirm:$false
        Get-QemuSnapshotNames $img | Should -Be @('first', 'third')
        (Get-QcowSnapshot $img).Id | Should -Be @('1', '3')
        (Get-QemuCheck $img).ExitCode | Should -Be 0
    }

    It 'snapshots every image of a folder: Get-ChildItem *.qcow2 | New-QcowSnapshot' {
        $folder = New-Item -ItemType Directory -Path (Join-Path $dir 'farm') -Force
        foreach ($i in 1..3) { New-QemuImage -Path (Join-Path $folder.FullName "web-$i.qcow2") -Size 1M | Out-Null }
        $made = @(Get-ChildItem -LiteralPath $folder.FullName -Filter *.qcow2 | New-QcowSnapshot -Name 'nightly')
        $made | Should -HaveCount 3
        $made.Name | Select-Object -Unique | Should -Be 'nightly'
        foreach ($m in $made) { Get-QemuSnapshotNames $m.Path | Should -Be @('nightly') }
        # And all of them go again in one line.
        Get-ChildItem -LiteralPath $folder.FullName -Filter *.qcow2 | Get-QcowSnapshot -Name 'nightly' | Remove-QcowSnapshot -Confirm:$false
        foreach ($m in $made) { Get-QemuSnapshotNames $m.Path | Should -HaveCount 0 }
    }

    It '<Cmdlet> with an unknown <What> is a non-terminating QcowPS.SnapshotNotFound and changes nothing' -ForEach @(
        @{ Cmdlet = 'Remove-QcowSnapshot'; What = 'name'; Params = @{ Name = 'no-such-snapshot' } }
        @{ Cmdlet = 'Remove-QcowSnapshot'; What = 'ID'; Params = @{ Id = '99' } }
        @{ Cmdlet = 'Restore-QcowSnapshot'; What = 'name'; Params = @{ Name = 'no-such-snapshot' } }
        @{ Cmdlet = 'Restore-QcowSnapshot'; What = 'ID'; Params = @{ Id = '99' } }
    ) {
        $img = New-QemuImage -Path (Join-Path $dir 'unknown.qcow2') -Size 1M -Write 'write -P 5 0 64k'
        Invoke-QemuImg 'snapshot', '-c', 'known', $img | Out-Null
        $other = New-QemuImage -Path (Join-Path $dir 'unknown-2.qcow2') -Size 1M
        Invoke-QemuImg 'snapshot', '-c', 'no-such-snapshot', $other | Out-Null
        Invoke-QemuImg 'snapshot', '-c', 'n2', $other | Out-Null
        $hash = Get-Hash $img
        $all = @(& $Cmdlet -Path $img @Params -Confirm:$false 2>&1)
        $err = @($all | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.SnapshotNotFound,*'
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        Get-Hash $img | Should -Be $hash
        # Non-terminating: the next image in the same call is still processed.
        & $Cmdlet -Path $img, $other @Params -Confirm:$false -ErrorAction SilentlyContinue
        Get-Hash $img | Should -Be $hash
        if ($What -eq 'name' -and $Cmdlet -eq 'Remove-QcowSnapshot') { Get-QemuSnapshotNames $other | Should -Be @('n2') }
        Remove-Item -LiteralPath $img, $other
    }

    It 'a snapshot name already taken is an error and adds nothing' {
        $img = New-QemuImage -Path (Join-Path $dir 'dup.qcow2') -Size 1M
        New-QcowSnapshot $img 'weekly' | Out-Null
        $hash = Get-Hash $img
        New-QcowSnapshot $img 'weekly' -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.*'
        Get-Hash $img | Should -Be $hash
        Get-QemuSnapshotNames $img | Should -Be @('weekly')
    }

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

Describe 'Test-QcowImage and Repair-QcowImage against qemu-img check' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder

        # Two data clusters (0 and 1 MiB); with -Snapshot, a snapshot and then a rewrite, so that
        # the cluster at 64 KiB is shared (refcount 2) and the one at 0 is not.
        function New-VictimImage([string]$Name, [switch]$Snapshot) {
            $path = New-QemuImage -Path (Join-Path $dir $Name) -Size 4M -Write 'write -P 0x11 0 128k', 'write -P 0x22 1M 64k'
            if ($Snapshot) {
                Invoke-QemuImg 'snapshot', '-c', 'before', $path | Out-Null
                Invoke-QemuIo $path 'write -P 0x33 0 64k'
            }
            return $path
        }

        # Damage an image by patching bytes at offsets taken from Get-QcowTable / Get-QcowCluster.
        function Invoke-Break([string]$Path, [string]$How) {
            $info = Get-QcowInfo $Path
            switch ($How) {
                'HeaderRefcount' {
                    Set-FileBigEndian -Path $Path -Offset (Get-RefcountEntry $Path 0).Offset -Value 2 -Size 2
                }
                'ClearL2' {
                    Set-FileBigEndian -Path $Path -Offset (Get-L2EntryOf $Path 1MB).Offset -Value 0
                }
                'TailLeak' {
                    $end = (Get-Item -LiteralPath $Path).Length
                    $stream = [IO.File]::Open($Path, 'Open', 'ReadWrite')
                    try { $stream.SetLength($end + $info.ClusterSize) } finally { $stream.Dispose() }
                    Set-FileBigEndian -Path $Path -Offset (Get-RefcountEntry $Path $end).Offset -Value 1 -Size 2
                }
                'DataRefcountZero' {
                    $hostOffset = (Get-QcowCluster $Path -Offset 0 -Length 1).HostOffset
                    Set-FileBigEndian -Path $Path -Offset (Get-RefcountEntry $Path $hostOffset).Offset -Value 0 -Size 2
                }
                'SharedRefcountOne' {
                    $cluster = Get-QcowCluster $Path -Offset 64KB -Length 1
                    if ($cluster.Refcount -ne 2) { throw "the cluster at 64 KiB should be shared, its refcount is $($cluster.Refcount)" }
                    Set-FileBigEndian -Path $Path -Offset (Get-RefcountEntry $Path $cluster.HostOffset).Offset -Value 1 -Size 2
                }
                'L2IntoL1' {
                    Set-FileBigEndian -Path $Path -Offset (Get-L2EntryOf $Path 1MB).Offset -Value ([UInt64]$info.L1TableOffset -bor [UInt64]::Parse('9223372036854775808'))
                }
                'L2IntoRefcountBlock' {
                    $block = (Get-QcowTable $Path RefcountTable -NonZero)[0].Target
                    Set-FileBigEndian -Path $Path -Offset (Get-L2EntryOf $Path 1MB).Offset -Value ([UInt64]$block -bor [UInt64]::Parse('9223372036854775808'))
                }
                default { throw "unknown damage '$How'" }
            }
        }
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'a clean image: Test-QcowImage is $true, -Detailed agrees with qemu-img check field by field' {
        $img = New-VictimImage 'clean.qcow2' -Snapshot
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
        $img = New-VictimImage "broken-$Break.qcow2" -Snapshot:($Break -eq 'SharedRefcountOne')
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

    It '<Name>: Repair-QcowImage -All fixes what qemu-img check -r all fixes, and the guest data agree' -ForEach $BrokenCases {
        $img = New-VictimImage "repair-all-$Break.qcow2" -Snapshot:($Break -eq 'SharedRefcountOne')
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
        $img = New-VictimImage "repair-leaks-$Break.qcow2" -Snapshot:($Break -eq 'SharedRefcountOne')
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
        $img = New-VictimImage 'already-clean.qcow2' -Snapshot
        $hash = Get-Hash $img
        foreach ($mode in @{ Leaks = $true }, @{ All = $true }) {
            $r = Repair-QcowImage $img @mode -Confirm:$false
            $r.LeaksFixed + $r.CorruptionsFixed | Should -Be 0
            $r.IsConsistent | Should -BeTrue
        }
        Get-Hash $img | Should -Be $hash
    }

    It '-Leaks and -All together are a terminating QcowPS.ConflictingParameters' {
        $img = New-VictimImage 'conflict.qcow2'
        Invoke-Break $img 'HeaderRefcount'
        $hash = Get-Hash $img
        { Repair-QcowImage $img -Leaks -All -Confirm:$false -ErrorAction SilentlyContinue } | Should -Throw -ErrorId 'QcowPS.ConflictingParameters,*'
        Get-Hash $img | Should -Be $hash
    }
}

Describe 'Pipelines from one changing cmdlet into the next, on the same image' -Skip:$SkipImages {
    # The objects these cmdlets return carry the image's Path, so a runbook pipes them on; the image must
    # be closed by the time the next cmdlet opens it for writing (as Get-QcowSnapshot | Remove-QcowSnapshot does).
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'New-QcowImage | New-QcowSnapshot: a new disk with a baseline snapshot' {
        $path = Join-Path $dir 'baseline.qcow2'
        $snap = @(New-QcowImage -Path $path -Size 1GB | New-QcowSnapshot -Name 'empty' -ErrorVariable err)
        $err | Should -HaveCount 0
        $snap.Name | Should -Be 'empty'
        (Get-QemuImageInfo $path).snapshots.name | Should -Be 'empty'
    }

    It 'New-QcowImage | Resize-QcowImage' {
        $path = Join-Path $dir 'made-then-grown.qcow2'
        $info = @(New-QcowImage -Path $path -Size 1GB | Resize-QcowImage -Size 2GB -ErrorVariable err)
        $err | Should -HaveCount 0
        $info.VirtualSize | Should -Be 2GB
        (Get-QemuImageInfo $path).'virtual-size' | Should -Be 2GB
    }

    It 'Resize-QcowImage | New-QcowSnapshot: grow, then mark the new size' {
        $path = New-QemuImage -Path (Join-Path $dir 'grown-then-snapped.qcow2') -Size 1G
        $snap = @(Resize-QcowImage -Path $path -Size 4GB | New-QcowSnapshot -Name 'after-grow' -ErrorVariable err)
        $err | Should -HaveCount 0
        $snap.DiskSize | Should -Be 4GB
        (Get-QemuImageInfo $path).snapshots.name | Should -Be 'after-grow'
    }

    It 'Test-QcowImage -Detailed | Repair-QcowImage, without anything collecting in between' {
        $path = New-QemuImage -Path (Join-Path $dir 'leaky.qcow2') -Size 1M -Write 'write -P 1 0 64k'
        Set-FileBigEndian -Path $path -Offset (Get-RefcountEntry $path 0).Offset -Value 2 -Size 2
        $r = @(Test-QcowImage -Path $path -Detailed | Repair-QcowImage -Confirm:$false -ErrorVariable err)
        $err | Should -HaveCount 0
        $r.LeaksFixed | Should -Be 1
        (Get-QemuCheck $path).ExitCode | Should -Be 0
    }
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
