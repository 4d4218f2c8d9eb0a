#Requires -Version 7.0
<#
    Pester 5 tests of New-QcowImage: provisioning disks that qemu-img info / check accept.
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

Describe 'New-QcowImage: provisioning disks' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        $elsewhere = New-QcowTestFolder -Prefix 'qcowps-pester-cwd'
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
        $path = New-Name $dir
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
        $path = New-Name $dir 'options'
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
        $path = New-Name $dir 'prealloc-metadata'
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
        $path = New-Name $dir 'prealloc-full'
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
