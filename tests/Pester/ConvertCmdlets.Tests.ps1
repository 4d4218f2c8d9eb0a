#Requires -Version 7.0
<#
    Pester 5 tests of Convert-QcowImage and Compare-QcowImage, used the way an operations runbook uses them:
    archiving VM disks compressed, exporting them to raw, flattening linked clones and snapshots, keeping
    only what differs from a golden image, and verifying every copy before trusting it.

    QEMU is the referee: every image the module writes is compared with its source by `qemu-img compare`,
    checked by `qemu-img check` (qcow2) and read back with qemu-io; Compare-QcowImage must give the answers
    `qemu-img compare` gives. Every image is made at run time in a temporary folder that the block's
    AfterAll removes. The module is imported from $env:QCOWPS_MODULE_PATH when set, else from the
    repository root. Without qemu-img the image tests are skipped, except on CI ($env:CI -eq 'true'),
    where they fail. The help of these cmdlets is tested by ReadCmdlets.Tests.ps1 (it covers every
    exported cmdlet).
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = Test-SkipWithoutQemu
    Import-QcowPSModule | Out-Null

    # Pairs of images (named in the Compare Describe's BeforeAll) and what `qemu-img compare` answers for them.
    $ComparePairs = @(
        @{ Name = 'a copy converted by qemu-img'; A = 'golden'; B = 'copy' }
        @{ Name = 'a copy with one byte changed'; A = 'golden'; B = 'onebyte' }
        @{ Name = 'the raw export'; A = 'golden'; B = 'raw' }
        @{ Name = 'the QED export'; A = 'golden'; B = 'qed' }
        @{ Name = 'the compressed copy'; A = 'golden'; B = 'compressed' }
        @{ Name = 'a copy grown by zeros'; A = 'golden'; B = 'grown' }
        @{ Name = 'a grown copy with data past the old end'; A = 'golden'; B = 'grownData' }
        @{ Name = 'the raw export with one byte changed, from the QED side'; A = 'qed'; B = 'rawChanged' }
        @{ Name = 'an overlay and the golden image it only reads'; A = 'overlay'; B = 'golden' }
        @{ Name = 'an overlay that wrote, and the golden image'; A = 'overlayWritten'; B = 'golden' }
    )
    # `qemu-img compare -s` also fails on sizes and on ranges stored differently (data, compressed, zero
    # flag, allocated zeros, unallocated): -Strict must give its answer on every pair.
    $StrictPairs = @(
        @{ Name = 'a byte-for-byte file copy'; A = 'golden'; B = 'fileCopy' }
    ) + $ComparePairs
    $FormatPairs = @(
        @{ A = 'golden'; B = 'raw' }
        @{ A = 'golden'; B = 'qed' }
        @{ A = 'raw'; B = 'qed' }
        @{ A = 'qed'; B = 'compressed' }
        @{ A = 'raw'; B = 'compressed' }
    )
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $QcowModule = Import-QcowPSModule
    $ProgressPreference = 'SilentlyContinue'

    function Invoke-QemuCompare {
        <# qemu-img compare, whatever its exit code: ExitCode (0 identical, 1 different, 2 error) and Text. #>
        param(
            [Parameter(Mandatory)][string]$A,
            [Parameter(Mandatory)][string]$B,
            [string]$FormatA = 'qcow2',
            [string]$FormatB = 'qcow2',
            [switch]$Strict
        )
        $arguments = @('compare', '-f', $FormatA, '-F', $FormatB)
        if ($Strict) { $arguments += '-s' }
        $text = (& qemu-img @arguments $A $B 2>&1 | ForEach-Object { "$_" }) -join "`n"
        [pscustomobject]@{ ExitCode = $LASTEXITCODE; Text = $text }
    }

    function Assert-QemuIdentical {
        <# qemu-img compare says the two images hold the same guest data. #>
        param([string]$A, [string]$B, [string]$FormatA = 'qcow2', [string]$FormatB = 'qcow2')
        $c = Invoke-QemuCompare -A $A -B $B -FormatA $FormatA -FormatB $FormatB
        $c.ExitCode | Should -Be 0 -Because "qemu-img compare $A $B said: $($c.Text)"
    }

    function Assert-QemuClean {
        <# qemu-img check finds nothing wrong with a qcow2 image; returns its report. #>
        param([string]$Path)
        $check = Get-QemuCheck $Path
        $check.ExitCode | Should -Be 0 -Because "qemu-img check $Path said: $($check.Messages -join '; ')"
        $check.Corruptions | Should -Be 0
        $check.Leaks | Should -Be 0
        $check.CheckErrors | Should -Be 0
        return $check
    }

    function Get-AllocatedBytes([string]$Path) {
        # Bytes the host file system has allocated for the file (qemu-img info's 'actual-size').
        [long](Invoke-QemuImg 'info', '--output=json', '-f', 'raw', $Path | ConvertFrom-Json).'actual-size'
    }

    function Get-Leftovers([string]$Folder) {
        # Temporary files of unfinished conversions: '.name.qcowps-xxxxxxxx'.
        @(Get-ChildItem -LiteralPath $Folder -Force -File | Where-Object Name -like '.*.qcowps-*' | ForEach-Object Name)
    }

    function New-VmDiskRaw([string]$Path) {
        <#
            A 64 MiB raw disk laid out like a small VM: 1 MiB of random bytes at 0 (boot loader, keys:
            incompressible), 4 MiB of log text at 8 MiB (compressible), 4 KiB of random bytes in the last
            sector block, zeros everywhere else.
        #>
        $random = New-RandomBytes -Length 1MB -Seed 42
        $log = [Text.StringBuilder]::new()
        for ($i = 0; $log.Length -lt 4MB; $i++) {
            [void]$log.AppendLine("2026-11-26T10:$('{0:d2}' -f ($i % 60)):00Z web01 nginx[$($i % 977)]: GET /api/v1/items/$i 200 $($i * 37 % 5000)ms")
        }
        $text = [Text.Encoding]::ASCII.GetBytes($log.ToString())
        $file = [IO.File]::Create($Path)
        try {
            $file.SetLength(64MB)
            $file.Position = 0; $file.Write($random, 0, 1MB)
            $file.Position = 8MB; $file.Write($text, 0, 4MB)
            $file.Position = 64MB - 4KB; $file.Write($random, 12345, 4KB)
        } finally {
            $file.Dispose()
        }
        return $Path
    }

    # The data ranges of New-VmDiskRaw, [start, end), and how many clusters of a given size hold data.
    $VmDataRanges = @(@(0, 1MB), @(8MB, 12MB), @((64MB - 4KB), 64MB))
    function Get-VmDataClusters([long]$ClusterSize) {
        $n = 0
        foreach ($r in $VmDataRanges) { $n += [Math]::Ceiling($r[1] / $ClusterSize) - [Math]::Floor($r[0] / $ClusterSize) }
        return [long]$n
    }

    function Assert-ResultTotals {
        <# The clusters of a result add up to the disk, and the timing is plausible. #>
        param($Result, [long]$ClusterSize, [TimeSpan]$Elapsed)
        $total = [Math]::Ceiling($Result.VirtualSize / $ClusterSize)
        ($Result.DataClusters + $Result.ZeroClusters + $Result.CompressedClusters) | Should -Be $total
        $Result.Duration | Should -BeOfType ([TimeSpan])
        $Result.Duration | Should -BeGreaterThan ([TimeSpan]::Zero)
        $Result.Duration | Should -BeLessOrEqual $Elapsed
        $Result.FileSize | Should -Be (Get-Item -LiteralPath $Result.Destination).Length
    }
}

Describe 'qemu-img prerequisites of the conversion tests' {
    It 'qemu-img and qemu-io are on PATH' {
        Assert-QemuToolsInIt
    }
}

Describe 'Convert-QcowImage: archiving and exporting VM disks' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder -Prefix 'qcowps-pester-convert'
        $vmRaw = New-VmDiskRaw (Join-Path $dir 'web01.raw')
        $vm = Join-Path $dir 'web01.qcow2'
        Invoke-QemuImg 'convert', '-f', 'raw', '-O', 'qcow2', $vmRaw, $vm | Out-Null
        $vmHash = Get-Hash $vm
        $n = 0
        function New-Name([string]$Stem, [string]$Extension = 'qcow2') { $script:n++; Join-Path $dir "$Stem-$script:n.$Extension" }
    }
    AfterAll { Remove-QcowTestFolder $dir }
    AfterEach {
        # Whatever a test did, the source disk is never changed and no temporary file is left behind.
        Get-Hash $vm | Should -Be $vmHash
        Get-Leftovers $dir | Should -BeNullOrEmpty
    }

    It 'qcow2 to qcow2: the copy reads the same, passes qemu-img check, and the result says what was written' {
        $out = New-Name 'copy'
        $watch = [Diagnostics.Stopwatch]::StartNew()
        $result = Convert-QcowImage -Path $vm -Destination $out
        $watch.Stop()

        @($result).Count | Should -Be 1
        $result | Should -BeOfType ([QcowPS.QcowConversionResult])
        $result.Source | Should -Be $vm
        $result.Destination | Should -Be $out
        "$($result.DestinationFormat)" | Should -Be 'Qcow2'
        $result.VirtualSize | Should -Be 64MB
        $result.DataClusters | Should -Be (Get-VmDataClusters 64KB)
        $result.CompressedClusters | Should -Be 0
        $result.ZeroClusters | Should -Be (1024 - (Get-VmDataClusters 64KB))
        $result.CompressionRatio | Should -Be 1
        Assert-ResultTotals $result 64KB $watch.Elapsed

        $q = Get-QemuImageInfo $out
        $q.format | Should -Be 'qcow2'
        $q.'virtual-size' | Should -Be 64MB
        $q.'cluster-size' | Should -Be 65536
        $q.'format-specific'.data.compat | Should -Be '1.1'
        $q.PSObject.Properties.Name | Should -Not -Contain 'backing-filename'
        Assert-QemuIdentical $vm $out
        $check = Assert-QemuClean $out
        $check.AllocatedClusters | Should -Be $result.DataClusters
        $check.CompressedClusters | Should -Be 0
        # Zeros are not written: only the data clusters take space, as after qemu-img convert.
        $result.FileSize | Should -BeLessThan (6MB)
    }

    It '-Compress (zlib, all cores): QEMU reads every compressed cluster, and incompressible data stays uncompressed' {
        $out = New-Name 'archive'
        $plain = Convert-QcowImage $vm (New-Name 'plain')
        $watch = [Diagnostics.Stopwatch]::StartNew()
        $result = Convert-QcowImage $vm $out -Compress
        $watch.Stop()

        # 16 clusters of random bytes cannot shrink; the 64 clusters of log text and the last cluster (4 KiB of data, then zeros) can.
        $result.DataClusters | Should -Be 16
        $result.CompressedClusters | Should -Be 65
        $result.ZeroClusters | Should -Be 943
        $result.CompressionRatio | Should -BeGreaterThan 1
        # Bytes in / bytes out: at least what the whole file gives (the file holds metadata too),
        # at most what storing only the uncompressed clusters would give.
        $bytesIn = ($result.DataClusters + $result.CompressedClusters) * 64KB
        $result.CompressionRatio | Should -BeGreaterOrEqual ($bytesIn / $result.FileSize)
        $result.CompressionRatio | Should -BeLessOrEqual ($bytesIn / ($result.DataClusters * 64KB))
        $result.FileSize | Should -BeLessThan ($plain.FileSize / 2)
        Assert-ResultTotals $result 64KB $watch.Elapsed

        (Get-QemuImageInfo $out).'format-specific'.data.'compression-type' | Should -Be 'zlib'
        Assert-QemuIdentical $vm $out
        $check = Assert-QemuClean $out
        $check.CompressedClusters | Should -Be 65
        $check.AllocatedClusters | Should -Be 81
        # QEMU inflates the log text itself (zlib streams with a 4 KiB window).
        Get-BytesHash (Read-QcowBlock $out 8MB 4MB -Raw) | Should -Be (Get-BytesHash (Get-FileBytes $vmRaw 8MB 4MB))
        $qemuRaw = Export-QemuRaw -Path $out -Destination (New-Name 'inflated' 'raw')
        Get-Hash $qemuRaw | Should -Be (Get-Hash $vmRaw)
    }

    It '-Compress -CompressionType Zstd: a zstd image that QEMU reads as the source' {
        $out = New-Name 'archive-zstd'
        $watch = [Diagnostics.Stopwatch]::StartNew()
        $result = Convert-QcowImage $vm $out -Compress -CompressionType Zstd
        $watch.Stop()

        $result.CompressedClusters | Should -Be 65
        $result.DataClusters | Should -Be 16
        $result.CompressionRatio | Should -BeGreaterThan 1
        Assert-ResultTotals $result 64KB $watch.Elapsed
        $q = Get-QemuImageInfo $out
        $q.'format-specific'.data.'compression-type' | Should -Be 'zstd'
        $q.'format-specific'.data.compat | Should -Be '1.1'
        Assert-QemuIdentical $vm $out
        (Assert-QemuClean $out).CompressedClusters | Should -Be 65
    }

    It '-ThrottleLimit 1 writes the same bytes as all cores (<Type>)' -ForEach @(
        @{ Type = 'Zlib' }
        @{ Type = 'Zstd' }
    ) {
        $many = Convert-QcowImage $vm (New-Name "threads-$Type") -Compress -CompressionType $Type
        $one = Convert-QcowImage $vm (New-Name "one-thread-$Type") -Compress -CompressionType $Type -ThrottleLimit 1
        $one.CompressedClusters | Should -Be $many.CompressedClusters
        $one.FileSize | Should -Be $many.FileSize
        Get-Hash $one.Destination | Should -Be (Get-Hash $many.Destination)
        Assert-QemuIdentical $vm $one.Destination
    }

    It '-Sync (flush before the rename) writes the same image as the default' {
        $plain = Convert-QcowImage $vm (New-Name 'unsynced') -Compress
        $synced = Convert-QcowImage $vm (New-Name 'synced') -Compress -Sync
        Get-Hash $synced.Destination | Should -Be (Get-Hash $plain.Destination)
        Assert-QemuClean $synced.Destination | Out-Null
    }

    It '-Compress -RefcountBits <Bits> on highly compressible data, as qemu-img convert -c does it' -ForEach @(
        @{ Bits = 1 }
        @{ Bits = 8 }
    ) {
        $pattern = New-QemuImage (New-Name 'pattern') 32M -Write 'write -P 0x5a 0 32M'
        $out = New-Name "refcount-$Bits"
        $result = Convert-QcowImage $pattern $out -Compress -RefcountBits $Bits
        $result.CompressedClusters | Should -Be 512
        (Get-QemuImageInfo $out).'format-specific'.data.'refcount-bits' | Should -Be $Bits
        Assert-QemuIdentical $pattern $out
        Assert-QemuClean $out | Out-Null
    }

    It '-ClusterSize <Label>: QEMU sees the new cluster size and the same data' -ForEach @(
        @{ Label = '512'; ClusterSize = 512; Bytes = 512 }
        @{ Label = '''4K'''; ClusterSize = '4K'; Bytes = 4096 }
        @{ Label = '2MB'; ClusterSize = 2MB; Bytes = 2097152 }
    ) {
        $out = New-Name 'cluster'
        $watch = [Diagnostics.Stopwatch]::StartNew()
        $result = Convert-QcowImage $vm $out -ClusterSize $ClusterSize
        $watch.Stop()
        $result.DataClusters | Should -Be (Get-VmDataClusters $Bytes)
        Assert-ResultTotals $result $Bytes $watch.Elapsed
        (Get-QemuImageInfo $out).'cluster-size' | Should -Be $Bytes
        Assert-QemuIdentical $vm $out
        $check = Assert-QemuClean $out
        $check.TotalClusters | Should -Be (64MB / $Bytes)
        $check.AllocatedClusters | Should -Be $result.DataClusters
    }

    It '-Version 2: a compat=0.10 image for old hypervisors, also compressed' {
        $out = New-Name 'v2'
        $result = Convert-QcowImage $vm $out -Version 2
        (Get-QemuImageInfo $out).'format-specific'.data.compat | Should -Be '0.10'
        $result.DataClusters | Should -Be (Get-VmDataClusters 64KB)
        Assert-QemuIdentical $vm $out
        Assert-QemuClean $out | Out-Null

        $compressed = New-Name 'v2-compressed'
        $result = Convert-QcowImage $vm $compressed -Version 2 -Compress
        $result.CompressedClusters | Should -Be 65
        (Get-QemuImageInfo $compressed).'format-specific'.data.compat | Should -Be '0.10'
        Assert-QemuIdentical $vm $compressed
        (Assert-QemuClean $compressed).CompressedClusters | Should -Be 65
    }

    It '-Version 2 refuses what a version 2 image cannot hold, and creates nothing' {
        $out = New-Name 'v2-zstd'
        $result = Convert-QcowImage $vm $out -Version 2 -Compress -CompressionType Zstd -ErrorAction SilentlyContinue -ErrorVariable err
        $result | Should -BeNullOrEmpty
        Get-ErrorIds $err | Should -Be @('QcowPS.InvalidArgument')
        $out | Should -Not -Exist
    }

    It 'raw to qcow2 (-Format Raw): the raw disk becomes a qcow2 image with only its data' {
        $out = New-Name 'from-raw'
        $result = Convert-QcowImage -Path $vmRaw -Destination $out -Format Raw
        $result.Source | Should -Be $vmRaw
        $result.VirtualSize | Should -Be 64MB
        $result.DataClusters | Should -Be (Get-VmDataClusters 64KB)
        Assert-QemuIdentical $vmRaw $out -FormatA raw
        Assert-QemuClean $out | Out-Null
        $result.FileSize | Should -BeLessThan 6MB
    }

    It 'a raw file of 100000 bytes becomes a 100352-byte disk, as qemu-img convert makes it' {
        $odd = Join-Path $dir 'odd.raw'
        [IO.File]::WriteAllBytes($odd, (New-RandomBytes -Length 100000 -Seed 9))
        $out = New-Name 'odd'
        $result = Convert-QcowImage $odd $out -Format Raw
        $result.VirtualSize | Should -Be 100352
        (Get-QemuImageInfo $out).'virtual-size' | Should -Be 100352
        Assert-QemuIdentical $odd $out -FormatA raw
    }

    It 'a raw file named on the command line is read as raw, as qemu-img reads it (issue 14)' {
        $out = New-Name 'from-raw'
        $result = Convert-QcowImage -Path $vmRaw -Destination $out -ErrorAction Stop
        $result | Should -Not -BeNullOrEmpty
        Assert-QemuIdentical $vmRaw $out -FormatA raw
    }

    It 'qcow2 to raw (-DestinationFormat Raw): the bytes of the original disk, in a sparse file' {
        $out = New-Name 'export' 'img'
        $result = Convert-QcowImage $vm $out -DestinationFormat Raw
        "$($result.DestinationFormat)" | Should -Be 'Raw'
        $result.VirtualSize | Should -Be 64MB
        $result.FileSize | Should -Be 64MB
        $result.CompressedClusters | Should -Be 0
        $result.DataClusters | Should -Be (Get-VmDataClusters 64KB)
        (Get-Item -LiteralPath $out).Length | Should -Be 64MB
        Get-Hash $out | Should -Be (Get-Hash $vmRaw)
        Assert-QemuIdentical $vm $out -FormatB raw
        # Sparse: about 5 MiB of data in a 64 MiB file; the zeros are holes.
        $allocated = Get-AllocatedBytes $out
        $allocated | Should -BeLessThan (64MB / 8) -Because "only the data blocks are written ($allocated bytes allocated)"
    }

    It 'a raw destination cannot be <Label>: a terminating error, and nothing is written' -ForEach @(
        @{ Label = 'compressed'; Extra = @{ Compress = $true } }
        @{ Label = 'given a backing file'; Extra = @{ BackingFile = 'web01.qcow2' } }
    ) {
        $out = New-Name 'raw-conflict' 'img'
        $caught = $null
        try { Convert-QcowImage $vm $out -DestinationFormat Raw @Extra } catch { $caught = $_ }
        $caught | Should -Not -BeNullOrEmpty
        $caught.FullyQualifiedErrorId | Should -BeLike 'QcowPS.ConflictingParameters,*'
        $out | Should -Not -Exist
    }
}

Describe 'Convert-QcowImage: flattening chains and snapshots, writing only the differences' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder -Prefix 'qcowps-pester-chain'
        # golden <- patched <- vm: three qcow2 layers. The VM zeroed 128 KiB that the golden image holds.
        $golden = New-QemuImage (Join-Path $dir 'golden.qcow2') 32M -Write 'write -P 0x11 0 4M', 'write -P 0x12 8M 1M'
        $patched = New-QemuImage (Join-Path $dir 'patched.qcow2') 32M -BackingFile 'golden.qcow2' -BackingFormat qcow2 `
            -Write 'write -P 0x21 1M 1M', 'write -P 0x22 16M 64k'
        $vm = New-QemuImage (Join-Path $dir 'vm.qcow2') 32M -BackingFile 'patched.qcow2' -BackingFormat qcow2 `
            -Write 'write -P 0x31 1536k 64k', 'write -z 8M 128k', 'write -P 0x32 20M 4k'
        # What the VM reads, range by range (qemu-io read -P patterns).
        $vmView = @('0x11 0 1M', '0x21 1M 512k', '0x31 1536k 64k', '0x21 1600k 448k', '0x11 2M 2M', '0 4M 4M',
            '0 8M 128k', '0x12 8320k 896k', '0 9M 7M', '0x22 16M 64k', '0 16448k 4032k', '0x32 20M 4k', '0 20484k 12284k')
        # Clusters holding data once flattened: [0, 4M) 64, [8M+128K, 9M) 14, 16M 1, 20M 1.
        $flatDataClusters = 80
        # Clusters where the VM's data differs from golden: [1M, 2M) 16, 16M 1, 20M 1; and 2 zeroed clusters.
        $deltaDataClusters = 18
        $hashes = @{}
        foreach ($f in $golden, $patched, $vm) { $hashes[$f] = Get-Hash $f }
        $n = 0
        function New-Name([string]$Stem, [string]$Extension = 'qcow2') { $script:n++; Join-Path $dir "$Stem-$script:n.$Extension" }
    }
    AfterAll { Remove-QcowTestFolder $dir }
    AfterEach {
        foreach ($f in $hashes.Keys) { Get-Hash $f | Should -Be $hashes[$f] -Because "'$f' is only read" }
        Get-Leftovers $dir | Should -BeNullOrEmpty
    }

    It 'a 3-layer backing chain is flattened into one standalone image that reads as the top layer' {
        $out = New-Name 'standalone'
        $result = Convert-QcowImage $vm $out
        $result.VirtualSize | Should -Be 32MB
        $result.DataClusters | Should -Be $flatDataClusters
        $result.ZeroClusters | Should -Be (512 - $flatDataClusters)
        $q = Get-QemuImageInfo $out -BackingChain
        @($q).Count | Should -Be 1 -Because 'the flattened image needs no backing file'
        $q[0].PSObject.Properties.Name | Should -Not -Contain 'backing-filename'
        Assert-QemuIdentical $vm $out
        Assert-QemuClean $out | Out-Null
        Get-QemuIoPatternMismatch $out $vmView | Should -BeNullOrEmpty
        # The golden image can go: the standalone image still reads the same.
        $moved = Join-Path (New-QcowTestFolder -Prefix 'qcowps-pester-moved') 'standalone.qcow2'
        try {
            Copy-Item -LiteralPath $out -Destination $moved
            Get-QemuIoPatternMismatch $moved $vmView | Should -BeNullOrEmpty
        } finally {
            Remove-QcowTestFolder (Split-Path $moved)
        }
    }

    It 'a chain of mixed formats (raw <- QED <- qcow2) is flattened too' {
        $base = New-QemuImage (Join-Path $dir 'mixed-base.raw') 16M -Format raw -Write 'write -P 0x41 0 2M'
        $middle = New-QemuImage (Join-Path $dir 'mixed-middle.qed') 16M -Format qed -BackingFile 'mixed-base.raw' -BackingFormat raw `
            -Write 'write -P 0x42 1M 1M'
        $top = New-QemuImage (Join-Path $dir 'mixed-top.qcow2') 16M -BackingFile 'mixed-middle.qed' -BackingFormat qed `
            -Write 'write -P 0x43 1536k 64k', 'write -z 0 64k'
        $out = New-Name 'mixed-flat'
        $result = Convert-QcowImage $top $out
        $result.DataClusters | Should -Be 31
        Assert-QemuIdentical $top $out
        Assert-QemuClean $out | Out-Null
        Get-QemuIoPatternMismatch $out '0 0 64k', '0x41 64k 960k', '0x42 1M 512k', '0x43 1536k 64k', '0x42 1600k 448k', '0 2M 14M' |
            Should -BeNullOrEmpty
        # A QED image alone converts as well.
        $fromQed = New-Name 'from-qed'
        (Convert-QcowImage $middle $fromQed).DataClusters | Should -Be 32
        Assert-QemuIdentical $middle $fromQed -FormatA qed
    }

    It '-BackingFile: a standalone disk becomes an overlay of the golden image holding only what differs' {
        $standalone = (Convert-QcowImage $vm (New-Name 'full')).Destination
        $out = Join-Path $dir 'vm-delta.qcow2'
        $result = Convert-QcowImage $standalone $out -BackingFile 'golden.qcow2' -BackingFormat qcow2
        $result.DataClusters | Should -Be $deltaDataClusters
        $result.DataClusters | Should -BeLessThan $flatDataClusters
        $result.FileSize | Should -BeLessThan ((Get-Item -LiteralPath $standalone).Length)

        $q = Get-QemuImageInfo $out
        $q.'backing-filename' | Should -Be 'golden.qcow2'
        $q.'backing-filename-format' | Should -Be 'qcow2'
        $q.'full-backing-filename' | Should -Be $golden
        # The overlay plus its backing file reads as the source: qemu-img compare follows the chain.
        Assert-QemuIdentical $standalone $out
        Assert-QemuIdentical $vm $out
        $check = Assert-QemuClean $out
        $check.AllocatedClusters | Should -Be $deltaDataClusters
        Get-QemuIoPatternMismatch $out $vmView | Should -BeNullOrEmpty
        # The 128 KiB the VM zeroed over golden's data are zero clusters in the overlay, not holes onto golden.
        $zeroed = @(Get-QemuMap $out | Where-Object { $_.start -le 8MB -and $_.start + $_.length -gt 8MB })
        $zeroed.Count | Should -Be 1
        $zeroed[0].depth | Should -Be 0
        $zeroed[0].zero | Should -BeTrue
        $zeroed[0].data | Should -BeFalse
    }

    It '-BackingFile from the chain itself writes the same differences, and a relative name is relative to the new image' {
        Push-Location -LiteralPath (New-QcowTestFolder -Prefix 'qcowps-pester-cwd')
        try {
            $out = Join-Path $dir 'vm-delta-from-chain.qcow2'
            # 'golden.qcow2' is found next to the destination, not in the current folder.
            $result = Convert-QcowImage $vm $out -BackingFile 'golden.qcow2'
            $result.DataClusters | Should -Be $deltaDataClusters
            (Get-QemuImageInfo $out).'backing-filename' | Should -Be 'golden.qcow2'
            Assert-QemuIdentical $vm $out
            Assert-QemuClean $out | Out-Null
        } finally {
            $here = (Get-Location).ProviderPath
            Pop-Location
            Remove-QcowTestFolder $here
        }
    }

    It '-BackingFile -Version 2: zeros over the backing file''s data still read as zeros' {
        $out = New-Name 'v2-delta'
        Convert-QcowImage $vm $out -BackingFile 'golden.qcow2' -Version 2 | Out-Null
        (Get-QemuImageInfo $out).'format-specific'.data.compat | Should -Be '0.10'
        Assert-QemuIdentical $vm $out
        Assert-QemuClean $out | Out-Null
    }

    It '-Snapshot <Label>: the snapshot''s data becomes a standalone image; the image is not changed' -ForEach @(
        @{ Label = 'by name'; Snapshot = 'nightly' }
        @{ Label = 'by ID'; Snapshot = '1' }
    ) {
        $db = Join-Path $dir 'db.qcow2'
        if (-not (Test-Path -LiteralPath $db)) {
            New-QemuImage $db 32M -Write 'write -P 0x41 0 2M', 'write -P 0x42 8M 64k' | Out-Null
            Invoke-QemuImg 'snapshot', '-c', 'nightly', $db | Out-Null
            Invoke-QemuIo $db 'write -P 0x43 0 1M', 'write -z 8M 64k', 'write -P 0x44 16M 64k'
        }
        $before = Get-Hash $db
        $out = New-Name "snapshot-$Snapshot"
        $result = Convert-QcowImage $db $out -Snapshot $Snapshot
        $result.VirtualSize | Should -Be 32MB
        $result.DataClusters | Should -Be 33
        Get-QemuIoPatternMismatch $out '0x41 0 2M', '0x42 8M 64k', '0 16M 64k', '0 2M 6M' | Should -BeNullOrEmpty
        $reference = Export-QemuRaw -Path $db -Destination (New-Name 'snapshot-reference' 'raw') -SnapshotName nightly
        Assert-QemuIdentical $reference $out -FormatA raw
        Assert-QemuClean $out | Out-Null
        Get-Hash $db | Should -Be $before
        (Get-QemuImageInfo $db).snapshots.name | Should -Be @('nightly')
    }

    It '-Snapshot of a snapshot that does not exist: QcowPS.SnapshotNotFound, nothing written' {
        $out = New-Name 'no-snapshot'
        $result = Convert-QcowImage $vm $out -Snapshot 'nosuch' -ErrorAction SilentlyContinue -ErrorVariable err
        $result | Should -BeNullOrEmpty
        Get-ErrorIds $err | Should -Be @('QcowPS.SnapshotNotFound')
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $out | Should -Not -Exist
    }
}

Describe 'Convert-QcowImage: never losing a file' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder -Prefix 'qcowps-pester-safety'
        $source = New-QemuImage (Join-Path $dir 'app01.qcow2') 16M -Write 'write -P 0x61 0 1M', 'write -P 0x62 12M 64k'
        $sourceHash = Get-Hash $source
        $n = 0
        function New-Name([string]$Stem) { $script:n++; Join-Path $dir "$Stem-$script:n.qcow2" }
    }
    AfterAll { Remove-QcowTestFolder $dir }
    AfterEach {
        Get-Hash $source | Should -Be $sourceHash
        Get-Leftovers $dir | Should -BeNullOrEmpty
    }

    It 'an existing destination is refused without -Force (QcowPS.FileExists) and left as it was' {
        $existing = New-QemuImage (New-Name 'existing') 8M -Write 'write -P 0x99 0 64k'
        $before = Get-Hash $existing
        $result = Convert-QcowImage $source $existing -ErrorAction SilentlyContinue -ErrorVariable err
        $result | Should -BeNullOrEmpty
        Get-ErrorIds $err | Should -Be @('QcowPS.FileExists')
        $err[0].CategoryInfo.Category | Should -Be 'ResourceExists'
        Get-Hash $existing | Should -Be $before
    }

    It '-Force replaces an existing destination with the converted image' {
        $existing = New-QemuImage (New-Name 'replaced') 8M -Write 'write -P 0x99 0 64k'
        $result = Convert-QcowImage $source $existing -Force
        $result.Destination | Should -Be $existing
        (Get-QemuImageInfo $existing).'virtual-size' | Should -Be 16MB
        Assert-QemuIdentical $source $existing
        Assert-QemuClean $existing | Out-Null
    }

    It '-WhatIf creates nothing, replaces nothing and returns nothing' {
        $new = New-Name 'whatif'
        Convert-QcowImage $source $new -WhatIf | Should -BeNullOrEmpty
        $new | Should -Not -Exist
        $existing = New-QemuImage (New-Name 'whatif-existing') 8M
        $before = Get-Hash $existing
        Convert-QcowImage $source $existing -Force -Compress -WhatIf | Should -BeNullOrEmpty
        Get-Hash $existing | Should -Be $before
    }

    It 'a destination that is the source is refused <Label>, and the source is not touched' -ForEach @(
        @{ Label = 'without -Force'; Force = $false; Id = 'QcowPS.FileExists' }
        @{ Label = 'even with -Force'; Force = $true; Id = 'QcowPS.InvalidArgument' }
    ) {
        $result = Convert-QcowImage $source $source -Force:$Force -ErrorAction SilentlyContinue -ErrorVariable err
        $result | Should -BeNullOrEmpty
        Get-ErrorIds $err | Should -Be @($Id)
        Assert-QemuClean $source | Out-Null
    }

    It 'a destination that is a backing file of the source is refused even with -Force' {
        $overlay = New-QemuImage (Join-Path $dir 'app01-overlay.qcow2') 16M -BackingFile 'app01.qcow2' -BackingFormat qcow2 -Write 'write -P 0x63 0 64k'
        $result = Convert-QcowImage $overlay $source -Force -ErrorAction SilentlyContinue -ErrorVariable err
        $result | Should -BeNullOrEmpty
        Get-ErrorIds $err | Should -Be @('QcowPS.InvalidArgument')
        $err[0].Exception.Message | Should -BeLike '*backing*'
    }

    It 'relative paths are resolved against $PWD, not the process''s current directory' {
        $elsewhere = New-QcowTestFolder -Prefix 'qcowps-pester-elsewhere'
        $saved = [Environment]::CurrentDirectory
        [Environment]::CurrentDirectory = $elsewhere
        Push-Location -LiteralPath $dir
        try {
            $result = Convert-QcowImage 'app01.qcow2' 'relative-copy.qcow2'
        } finally {
            Pop-Location
            [Environment]::CurrentDirectory = $saved
        }
        try {
            $result.Source | Should -Be $source
            $result.Destination | Should -Be (Join-Path $dir 'relative-copy.qcow2')
            Join-Path $dir 'relative-copy.qcow2' | Should -Exist
            @(Get-ChildItem -LiteralPath $elsewhere -Force) | Should -BeNullOrEmpty
            Assert-QemuIdentical $source $result.Destination
        } finally {
            Remove-QcowTestFolder $elsewhere
        }
    }

    It 'Get-ChildItem *.qcow2 | ForEach-Object { Convert-QcowImage ... -Compress } archives every disk of a folder' {
        $disks = New-QcowTestFolder -Prefix 'qcowps-pester-disks'
        $archive = New-QcowTestFolder -Prefix 'qcowps-pester-archive'
        try {
            $names = 'db01', 'web01', 'web02'
            $i = 0
            foreach ($name in $names) {
                $i++
                New-QemuImage (Join-Path $disks "$name.qcow2") 8M -Write "write -P 0x$($i)a 0 512k", "write -P 0x$($i)b 6M 64k" | Out-Null
            }
            Set-Content -LiteralPath (Join-Path $disks 'README.txt') -Value 'not a disk'
            Push-Location -LiteralPath $archive
            try {
                $results = @(Get-ChildItem (Join-Path $disks '*.qcow2') | ForEach-Object {
                        Convert-QcowImage $_.FullName "$($_.BaseName).small.qcow2" -Compress
                    })
            } finally {
                Pop-Location
            }
            $results.Count | Should -Be 3
            @($results.Destination | Sort-Object) | Should -Be @($names | ForEach-Object { Join-Path $archive "$_.small.qcow2" })
            foreach ($r in $results) {
                $r.CompressedClusters | Should -Be 9
                $r.DataClusters | Should -Be 0
                Assert-QemuIdentical $r.Source $r.Destination
                (Assert-QemuClean $r.Destination).CompressedClusters | Should -Be 9
            }
            # And piped straight in: a FileInfo binds to -LiteralPath.
            $direct = Get-Item -LiteralPath (Join-Path $disks 'web02.qcow2') | Convert-QcowImage -Destination (Join-Path $archive 'direct.qcow2')
            $direct.Source | Should -Be (Join-Path $disks 'web02.qcow2')
            Assert-QemuIdentical $direct.Source $direct.Destination
        } finally {
            Remove-QcowTestFolder $disks
            Remove-QcowTestFolder $archive
        }
    }

    It 'several sources for one destination: QcowPS.OneSourcePerDestination stops the command after the first' {
        $second = New-QemuImage (Join-Path $dir 'app02.qcow2') 16M -Write 'write -P 0x71 0 64k'
        $out = New-Name 'one-destination'
        $caught = $null
        $results = @()
        try {
            Get-Item -LiteralPath $source, $second | Convert-QcowImage -Destination $out | ForEach-Object { $results += $_ }
        } catch {
            $caught = $_
        }
        $caught | Should -Not -BeNullOrEmpty
        $caught.FullyQualifiedErrorId | Should -BeLike 'QcowPS.OneSourcePerDestination,*'
        $results.Count | Should -Be 1
        # The destination holds the first source, whole; the second was not written over it.
        Assert-QemuIdentical $source $out
        Remove-Item -LiteralPath $second
    }

    It 'an image a running QEMU holds is refused with QcowPS.ImageInUse, and nothing is written' {
        $held = Join-Path $dir 'held.qcow2'
        Copy-Item -LiteralPath $source -Destination $held
        $out = New-Name 'from-held'
        $qemu = Start-QemuIoHolder $held
        try {
            $result = Convert-QcowImage $held $out -ErrorAction SilentlyContinue -ErrorVariable err
        } finally {
            Stop-QemuIoHolder $qemu
        }
        $result | Should -BeNullOrEmpty
        Get-ErrorIds $err | Should -Be @('QcowPS.ImageInUse')
        $out | Should -Not -Exist
    }

    It 'Ctrl+C (stopping the pipeline) deletes the partial image and leaves nothing under the destination name' {
        # 32 MiB of random bytes compressed in 512-byte clusters on one thread: seconds of work, stopped as soon as it starts.
        $big = Join-Path $dir 'big.raw'
        [IO.File]::WriteAllBytes($big, (New-RandomBytes -Length 32MB -Seed 5))
        $out = Join-Path $dir 'big.qcow2'
        $ps = [powershell]::Create()
        try {
            $script = 'param($Module, $Source, $Destination) Import-Module $Module; $ProgressPreference = ''SilentlyContinue''; ' +
                'Convert-QcowImage -LiteralPath $Source -Destination $Destination -Format Raw -Compress -ClusterSize 512 -ThrottleLimit 1'
            [void]$ps.AddScript($script).AddArgument((Get-QcowPSModulePath)).AddArgument($big).AddArgument($out)
            $handle = $ps.BeginInvoke()
            $deadline = [DateTime]::UtcNow.AddSeconds(30)
            $partial = $null
            while (-not $partial -and -not $handle.IsCompleted -and [DateTime]::UtcNow -lt $deadline) {
                Start-Sleep -Milliseconds 10
                $partial = Get-Leftovers $dir
            }
            # What Ctrl+C does at the prompt: stop the running pipeline.
            $ps.Stop()
            $partial | Should -Not -BeNullOrEmpty -Because "the image is written under a temporary name ($($ps.Streams.Error))"
            "$($ps.InvocationStateInfo.State)" | Should -Be 'Stopped' -Because 'the conversion must have been running when it was stopped'
            $ps.Streams.Error | Should -BeNullOrEmpty
        } finally {
            $ps.Dispose()
            Remove-Item -LiteralPath $big -ErrorAction SilentlyContinue
        }
        $out | Should -Not -Exist
        Get-Leftovers $dir | Should -BeNullOrEmpty
    }
}

Describe 'Convert-QcowImage: progress' -Skip:$SkipImages {
    # The progress clock is replaced by one that advances a fixed step per reading
    # (Invoke-QcowWithSteppedClock), so these tests do not depend on how fast the machine is.
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder -Prefix 'qcowps-pester-progress'
        $convert = 'param($Source, $Destination, $Options) Invoke-Expression "Convert-QcowImage -LiteralPath `$Source -Destination `$Destination -Force $Options"'
        $source = New-QemuImage (Join-Path $dir 'source.qcow2') 64M -Write 'write -P 0x61 0 24M', 'write -P 0x62 40M 20M'
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'work that ends within the first half second draws no progress bar at all' {
        # A clock standing still: however long the conversion takes in real time, it is under 0.5 s.
        $run = Invoke-QcowWithSteppedClock -Script $convert -ArgumentList $source, (Join-Path $dir 'still.qcow2'), '' -ActivityId 3 -StepSeconds 0
        $run.Errors | Should -BeNullOrEmpty
        $run.Readings | Should -BeGreaterThan 2 -Because 'the conversion reads the clock as it reports'
        $run.Records.Count | Should -Be 0
    }

    It 'long work reports growing percentages, at most four a second, and completes' {
        # Each reading of the clock is 1/8 s: the first record may come at the 4th reading, the next
        # at least two readings later.
        $run = Invoke-QcowWithSteppedClock -Script $convert -ArgumentList $source, (Join-Path $dir 'stepped.qcow2'), '-ThrottleLimit 1' -ActivityId 3 -StepSeconds 0.125
        $run.Errors | Should -BeNullOrEmpty
        $records = $run.Records
        $seconds = $run.Readings * 0.125
        $seconds | Should -BeGreaterThan 2 -Because 'the premise of this test: enough clock readings for several records'
        $records.Count | Should -BeGreaterThan 2
        $records.Count | Should -BeLessOrEqual ([Math]::Floor(($seconds - 0.5) * 4) + 2)
        $records[-1].RecordType | Should -Be 'Completed'
        # Each record is its own object (one object re-sent would show every record as the last state).
        @($records | Where-Object RecordType -eq 'Completed').Count | Should -Be 1
        $percents = @($records | Where-Object RecordType -eq 'Processing' | ForEach-Object PercentComplete)
        $percents.Count | Should -Be ($records.Count - 1)
        $percents | ForEach-Object { $_ | Should -BeIn (0..100) }
        for ($i = 1; $i -lt $percents.Count; $i++) { $percents[$i] | Should -BeGreaterThan $percents[$i - 1] }
    }
}

Describe 'Compare-QcowImage: verifying copies like qemu-img compare' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder -Prefix 'qcowps-pester-compare'
        function Get-TestPath([string]$Name) { Join-Path $dir $Name }

        $golden = New-QemuImage (Get-TestPath 'golden.qcow2') 64M -Write 'write -P 0x5a 0 3M', 'write -P 0x33 10M 64k', 'write -P 0x44 63M 1M'
        $img = [ordered]@{ golden = $golden }
        $fmt = @{ golden = 'qcow2' }
        function Add-Image([string]$Key, [string]$Path, [string]$Format = 'qcow2') { $img[$Key] = $Path; $fmt[$Key] = $Format }
        function Copy-Converted([string]$Key, [string]$Format = 'qcow2', [string[]]$Extra = @()) {
            $ext = @{ qcow2 = 'qcow2'; raw = 'img'; qed = 'qed' }[$Format]
            $path = Get-TestPath "$Key.$ext"
            Invoke-QemuImg (@('convert', '-f', 'qcow2', '-O', $Format) + $Extra + @($golden, $path)) | Out-Null
            Add-Image $Key $path $Format
        }
        Copy-Converted 'copy' -Extra '-o', 'cluster_size=4096'
        Copy-Converted 'onebyte'
        Invoke-QemuIo $img.onebyte 'write -P 0x01 100000 1'
        Copy-Converted 'raw' 'raw'
        Copy-Converted 'rawChanged' 'raw'
        Invoke-QemuIo $img.rawChanged 'write -P 0x02 2000000 1' -Format raw
        Copy-Converted 'qed' 'qed'
        Copy-Converted 'compressed' -Extra '-c'
        Add-Image 'fileCopy' (Get-TestPath 'file-copy.qcow2')
        Copy-Item -LiteralPath $golden -Destination $img.fileCopy
        Add-Image 'grown' (Get-TestPath 'grown.qcow2')
        Copy-Item -LiteralPath $golden -Destination $img.grown
        Invoke-QemuImg 'resize', '-q', $img.grown, '80M' | Out-Null
        Add-Image 'grownData' (Get-TestPath 'grown-data.qcow2')
        Copy-Item -LiteralPath $img.grown -Destination $img.grownData
        Invoke-QemuIo $img.grownData 'write -P 0x07 73400327 1'
        Add-Image 'overlay' (New-QemuImage (Get-TestPath 'overlay.qcow2') 64M -BackingFile 'golden.qcow2' -BackingFormat qcow2)
        Add-Image 'overlayWritten' (New-QemuImage (Get-TestPath 'overlay-written.qcow2') 64M -BackingFile 'golden.qcow2' -BackingFormat qcow2 -Write 'write -z 1M 64k')
        # Several ranges changed: one inside a sector, one across the 1 MiB mark, one across sectors, one in the empty part.
        Copy-Converted 'ranges'
        Invoke-QemuIo $img.ranges 'write -P 0x01 100000 10', 'write -P 0x02 1048276 600', 'write -P 0x03 5242980 2000', 'write -P 0x04 40M 1'

        $formatName = @{ qcow2 = 'Qcow2'; raw = 'Raw'; qed = 'Qed' }
        function Compare-Pair([string]$A, [string]$B, [hashtable]$Extra = @{}) {
            Compare-QcowImage -Path $img[$A] -DifferencePath $img[$B] -Format $formatName[$fmt[$A]] -DifferenceFormat $formatName[$fmt[$B]] @Extra
        }
        $hashes = @{}
        foreach ($k in $img.Keys) { $hashes[$img[$k]] = Get-Hash $img[$k] }
    }
    AfterAll { Remove-QcowTestFolder $dir }
    AfterEach {
        # Comparing only reads.
        foreach ($f in $hashes.Keys) { Get-Hash $f | Should -Be $hashes[$f] -Because "'$f' is only read" }
    }

    It 'identical images give no output, and -Quiet gives $true' {
        $out = @(Compare-QcowImage $golden $img.copy -WarningVariable w)
        $out.Count | Should -Be 0
        $w | Should -BeNullOrEmpty
        $quiet = @(Compare-QcowImage $golden $img.copy -Quiet)
        $quiet.Count | Should -Be 1
        $quiet[0] | Should -BeOfType ([bool])
        $quiet[0] | Should -BeTrue
        (Invoke-QemuCompare $golden $img.copy).ExitCode | Should -Be 0
    }

    It 'a byte changed at <Offset> (<Where>) gives one QcowDifference at exactly that offset' -ForEach @(
        @{ Where = 'in the data, inside a sector'; Offset = 100003 }
        @{ Where = 'the last byte of a data run'; Offset = 3145727 }
        @{ Where = 'in the empty part of the disk'; Offset = 41943047 }
        @{ Where = 'the last byte of the disk'; Offset = 67108863 }
    ) {
        $changed = Get-TestPath "changed-$Offset.qcow2"
        Invoke-QemuImg 'convert', '-O', 'qcow2', $golden, $changed | Out-Null
        Invoke-QemuIo $changed "write -P 0xee $Offset 1"
        try {
            $out = @(Compare-QcowImage $golden $changed)
            $out.Count | Should -Be 1
            $out[0] | Should -BeOfType ([QcowPS.QcowDifference])
            $out[0].Offset | Should -Be $Offset
            $out[0].Length | Should -Be 1
            $out[0].Reason | Should -Be 'Content'
            $out[0].Path | Should -Be $golden
            $out[0].DifferencePath | Should -Be $changed
            Compare-QcowImage $golden $changed -Quiet | Should -BeFalse
            # qemu-img compare finds it too, in the same 512-byte sector.
            $q = Invoke-QemuCompare $golden $changed
            $q.ExitCode | Should -Be 1
            $q.Text | Should -Match "offset $([Math]::Floor($Offset / 512) * 512)\b"
        } finally {
            Remove-Item -LiteralPath $changed
        }
    }

    It '-All gives every differing range, sector aligned and merged, in order' {
        $first = @(Compare-QcowImage $golden $img.ranges)
        $first.Count | Should -Be 1
        $first[0].Offset | Should -Be 100000

        $all = @(Compare-QcowImage $golden $img.ranges -All)
        $all.Count | Should -Be 4
        @($all | ForEach-Object { "$($_.Offset)+$($_.Length)" }) | Should -Be @(
            '99840+512'         # 100000..100009 lies in one sector
            '1048064+1024'      # 1048276..1048875 spans the two sectors around 1 MiB
            '5242880+2560'      # 5242980..5244979 spans five sectors
            '41943040+512'      # one byte in the empty part
        )
        foreach ($d in $all) {
            $d.Offset % 512 | Should -Be 0
            $d.Length % 512 | Should -Be 0
            $d.Reason | Should -Be 'Content'
        }
        # Every range really differs, and everything between them is the same (read back with Read-QcowBlock).
        foreach ($d in $all) {
            Get-BytesHash (Read-QcowBlock $golden $d.Offset $d.Length -Raw) |
                Should -Not -Be (Get-BytesHash (Read-QcowBlock $img.ranges $d.Offset $d.Length -Raw))
        }
        Get-BytesHash (Read-QcowBlock $golden 1049088 4193792 -Raw) | Should -Be (Get-BytesHash (Read-QcowBlock $img.ranges 1049088 4193792 -Raw))
    }

    It 'the default view shows each difference on one line within 120 columns, the offset in hex' {
        $text = Compare-QcowImage $golden $img.ranges -All | Out-String -Width 120
        $stats = Get-TextLineStats $text
        $stats.MaxLength | Should -BeLessOrEqual 120
        $text | Should -Match '(?m)^\s*Offset\s+Length\s+Reason\s+Image\s+DifferenceImage\s*$'
        $text | Should -Match '(?m)^\s*0x18600\s+512\s+Content\s+golden\.qcow2\s+ranges\.qcow2\s*$'
        $text | Should -Match '(?m)^\s*0xFFE00\s+1024\s+Content\s+golden\.qcow2\s+ranges\.qcow2\s*$'
        $text | Should -Match '(?m)^\s*0x2800000\s+512\s+Content\s'
        # Narrow consoles too: at 80 columns the headers and file names still fit on one line each.
        $narrow = Compare-QcowImage $golden $img.ranges -All | Out-String -Width 80
        (Get-TextLineStats $narrow).MaxLength | Should -BeLessOrEqual 80
        $narrow | Should -Match '(?m)^\s*Offset\s+Length\s+Reason\s+Image\s+DifferenceImage\s*$'
        @((Get-TextLineStats $narrow).Lines | Where-Object { $_ -match '^\s*0x[0-9A-F]+\s+\d+\s+Content\s+golden\.qcow2\s+ranges\.qcow2\s*$' }) |
            Should -HaveCount 4
    }

    It 'images of different sizes: a warning, identical when the extra part is zeros' {
        $out = @(Compare-QcowImage $golden $img.grown -WarningVariable w -WarningAction SilentlyContinue)
        $out.Count | Should -Be 0
        @($w).Count | Should -Be 1
        "$($w[0])" | Should -BeLike '*size*67108864*83886080*'
        Compare-QcowImage $golden $img.grown -Quiet -WarningAction SilentlyContinue | Should -BeTrue
        # Either way round.
        Compare-QcowImage $img.grown $golden -Quiet -WarningAction SilentlyContinue | Should -BeTrue
        (Invoke-QemuCompare $golden $img.grown).ExitCode | Should -Be 0
    }

    It 'images of different sizes with -Strict: one SizeMismatch difference, and no warning' {
        $out = @(Compare-QcowImage $golden $img.grown -Strict -WarningVariable w)
        $w | Should -BeNullOrEmpty
        $out.Count | Should -Be 1
        $out[0].Reason | Should -Be 'SizeMismatch'
        $out[0].Offset | Should -Be 64MB
        $out[0].Length | Should -Be 16MB
        Compare-QcowImage $golden $img.grown -Strict -Quiet | Should -BeFalse
        (Invoke-QemuCompare $golden $img.grown -Strict).ExitCode | Should -Be 1
    }

    It 'data past the end of the smaller image is a difference, at its exact offset' {
        $out = @(Compare-QcowImage $golden $img.grownData -WarningAction SilentlyContinue)
        $out.Count | Should -Be 1
        $out[0].Reason | Should -Be 'Content'
        $out[0].Offset | Should -Be 73400327
        $all = @(Compare-QcowImage $golden $img.grownData -Strict -All)
        @($all | ForEach-Object { "$($_.Reason)@$($_.Offset)+$($_.Length)" }) | Should -Be @('SizeMismatch@67108864+16777216', 'Content@73400320+512')
    }

    It 'agrees with qemu-img compare''s exit code on <Name>' -ForEach $ComparePairs {
        $q = Invoke-QemuCompare $img[$A] $img[$B] -FormatA $fmt[$A] -FormatB $fmt[$B]
        $q.ExitCode | Should -BeIn 0, 1 -Because $q.Text
        $quiet = @(Compare-Pair $A $B @{ Quiet = $true; WarningAction = 'SilentlyContinue' })
        $quiet.Count | Should -Be 1
        $quiet[0] | Should -Be ($q.ExitCode -eq 0) -Because "qemu-img compare said: $($q.Text)"
        # The difference objects say the same: none exactly when qemu-img finds the images identical.
        $differences = @(Compare-Pair $A $B @{ WarningAction = 'SilentlyContinue' })
        ($differences.Count -eq 0) | Should -Be ($q.ExitCode -eq 0)
    }

    It 'with -Strict agrees with qemu-img compare -s on <Name>' -ForEach $StrictPairs {
        $q = Invoke-QemuCompare $img[$A] $img[$B] -FormatA $fmt[$A] -FormatB $fmt[$B] -Strict
        $q.ExitCode | Should -BeIn 0, 1 -Because $q.Text
        Compare-Pair $A $B @{ Quiet = $true; Strict = $true } | Should -Be ($q.ExitCode -eq 0) -Because "qemu-img compare -s said: $($q.Text)"
    }

    It 'works across formats: <A> and <B> hold the same guest data' -ForEach $FormatPairs {
        @(Compare-Pair $A $B) | Should -BeNullOrEmpty
        @(Compare-Pair $B $A) | Should -BeNullOrEmpty
        Compare-Pair $A $B @{ Quiet = $true } | Should -BeTrue
    }

    It 'works across formats: a byte changed in a raw image is found from the <Side> side at its exact offset' -ForEach @(
        @{ Side = 'qcow2'; Key = 'golden' }
        @{ Side = 'QED'; Key = 'qed' }
        @{ Side = 'compressed qcow2'; Key = 'compressed' }
    ) {
        $out = @(Compare-Pair $Key 'rawChanged')
        $out.Count | Should -Be 1
        $out[0].Offset | Should -Be 2000000
        $out[0].DifferencePath | Should -Be $img.rawChanged
    }

    It 'a raw image named on the command line is read as raw: the same answer as with -DifferenceFormat Raw (issue 14)' {
        $out = @(Compare-QcowImage $golden $img.raw -Quiet -ErrorAction Stop)
        $out.Count | Should -Be 1
        $out[0] | Should -Be (Compare-QcowImage $golden $img.raw -DifferenceFormat Raw -Quiet)
    }

    It 'a missing image is an error (QcowPS.FileNotFound), not a difference' {
        $out = @(Compare-QcowImage $golden (Get-TestPath 'missing.qcow2') -Quiet -ErrorAction SilentlyContinue -ErrorVariable err)
        $out.Count | Should -Be 0
        Get-ErrorIds $err | Should -Be @('QcowPS.FileNotFound')
    }

    It 'a runbook check: Get-ChildItem | Compare-QcowImage -DifferencePath golden -Quiet, one answer per copy, in order' {
        Push-Location -LiteralPath $dir
        try {
            $answers = @(Get-ChildItem -LiteralPath $img.copy, $img.onebyte, $img.compressed | Compare-QcowImage -DifferencePath 'golden.qcow2' -Quiet)
        } finally {
            Pop-Location
        }
        $answers | Should -Be @($true, $false, $true)
    }

    It 'a copy made by Convert-QcowImage passes the runbook''s check, and a tampered one fails it' {
        $archive = Get-TestPath 'golden-archive.qcow2'
        Convert-QcowImage $golden $archive -Compress | Out-Null
        Compare-QcowImage $golden $archive -Quiet | Should -BeTrue
        Invoke-QemuIo $archive 'write -P 0x00 1M 1'
        $out = @(Compare-QcowImage $golden $archive)
        $out.Count | Should -Be 1
        $out[0].Offset | Should -Be 1MB
        (Invoke-QemuCompare $golden $archive).ExitCode | Should -Be 1
        Remove-Item -LiteralPath $archive
    }
}

Describe 'Convert-QcowImage -CompressionLevel' -Skip:$SkipImages {
    BeforeAll {
        Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
        Assert-QemuTools
        Import-QcowPSModule | Out-Null
        $dir = New-QcowTestFolder
        $raw = Join-Path $dir 'text.raw'
        $line = [Text.Encoding]::ASCII.GetBytes("QcowPS compression level test line with some varied words $(1..40 -join ' ')`n")
        $bytes = [byte[]]::new(4MB)
        for ($i = 0; $i -lt $bytes.Length; $i++) { $bytes[$i] = $line[$i % $line.Length] -bxor [byte](($i -shr 12) % 7) }
        [IO.File]::WriteAllBytes($raw, $bytes)
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'zstd level 1 and 19 both read back in QEMU, and 19 is no larger than 1' {
        $fast = Join-Path $dir 'fast.qcow2'
        $small = Join-Path $dir 'small.qcow2'
        Convert-QcowImage -LiteralPath $raw -Format Raw -Destination $fast -Compress -CompressionType Zstd -CompressionLevel 1 | Out-Null
        Convert-QcowImage -LiteralPath $raw -Format Raw -Destination $small -Compress -CompressionType Zstd -CompressionLevel 19 | Out-Null
        foreach ($f in $fast, $small) {
            & qemu-img compare -f raw -F qcow2 $raw $f | Out-Null
            $LASTEXITCODE | Should -Be 0
        }
        (Get-Item $small).Length | Should -BeLessOrEqual (Get-Item $fast).Length
    }

    It 'a zlib level above 9 and a level without -Compress are terminating parameter errors' {
        { Convert-QcowImage -LiteralPath $raw -Format Raw -Destination (Join-Path $dir 'x.qcow2') -Compress -CompressionLevel 12 } |
            Should -Throw -ErrorId 'QcowPS.InvalidCompressionLevel,QcowPS.Cmdlets.ConvertQcowImageCommand'
        { Convert-QcowImage -LiteralPath $raw -Format Raw -Destination (Join-Path $dir 'x.qcow2') -CompressionLevel 3 } |
            Should -Throw -ErrorId 'QcowPS.ConflictingParameters,QcowPS.Cmdlets.ConvertQcowImageCommand'
        Test-Path (Join-Path $dir 'x.qcow2') | Should -BeFalse
    }
}
