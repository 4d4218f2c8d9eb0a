#Requires -Version 7.0
<#
    Pester 5 tests of Convert-QcowImage used the way an operations runbook uses it: archiving VM disks
    compressed, exporting them to raw, progress, and -CompressionLevel. Chains and snapshots are in
    Convert-QcowImage.Chains.Tests.ps1, never losing a file in Convert-QcowImage.Safety.Tests.ps1.
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
    }
    AfterAll { Remove-QcowTestFolder $dir }
    AfterEach {
        # Whatever a test did, the source disk is never changed and no temporary file is left behind.
        Get-Hash $vm | Should -Be $vmHash
        Get-Leftovers $dir | Should -BeNullOrEmpty
    }

    It 'qcow2 to qcow2: the copy reads the same, passes qemu-img check, and the result says what was written' {
        $out = New-Name $dir 'copy'
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
        $out = New-Name $dir 'archive'
        $plain = Convert-QcowImage $vm (New-Name $dir 'plain')
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
        $qemuRaw = Export-QemuRaw -Path $out -Destination (New-Name $dir 'inflated' 'raw')
        Get-Hash $qemuRaw | Should -Be (Get-Hash $vmRaw)
    }

    It '-Compress -CompressionType Zstd: a zstd image that QEMU reads as the source' {
        $out = New-Name $dir 'archive-zstd'
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
        $many = Convert-QcowImage $vm (New-Name $dir "threads-$Type") -Compress -CompressionType $Type
        $one = Convert-QcowImage $vm (New-Name $dir "one-thread-$Type") -Compress -CompressionType $Type -ThrottleLimit 1
        $one.CompressedClusters | Should -Be $many.CompressedClusters
        $one.FileSize | Should -Be $many.FileSize
        Get-Hash $one.Destination | Should -Be (Get-Hash $many.Destination)
        Assert-QemuIdentical $vm $one.Destination
    }

    It '-Sync (flush before the rename) writes the same image as the default' {
        $plain = Convert-QcowImage $vm (New-Name $dir 'unsynced') -Compress
        $synced = Convert-QcowImage $vm (New-Name $dir 'synced') -Compress -Sync
        Get-Hash $synced.Destination | Should -Be (Get-Hash $plain.Destination)
        Assert-QemuClean $synced.Destination | Out-Null
    }

    It '-Compress -RefcountBits <Bits> on highly compressible data, as qemu-img convert -c does it' -ForEach @(
        @{ Bits = 1 }
        @{ Bits = 8 }
    ) {
        $pattern = New-QemuImage (New-Name $dir 'pattern') 32M -Write 'write -P 0x5a 0 32M'
        $out = New-Name $dir "refcount-$Bits"
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
        $out = New-Name $dir 'cluster'
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
        $out = New-Name $dir 'v2'
        $result = Convert-QcowImage $vm $out -Version 2
        (Get-QemuImageInfo $out).'format-specific'.data.compat | Should -Be '0.10'
        $result.DataClusters | Should -Be (Get-VmDataClusters 64KB)
        Assert-QemuIdentical $vm $out
        Assert-QemuClean $out | Out-Null

        $compressed = New-Name $dir 'v2-compressed'
        $result = Convert-QcowImage $vm $compressed -Version 2 -Compress
        $result.CompressedClusters | Should -Be 65
        (Get-QemuImageInfo $compressed).'format-specific'.data.compat | Should -Be '0.10'
        Assert-QemuIdentical $vm $compressed
        (Assert-QemuClean $compressed).CompressedClusters | Should -Be 65
    }

    It '-Version 2 refuses what a version 2 image cannot hold, and creates nothing' {
        $out = New-Name $dir 'v2-zstd'
        $result = Convert-QcowImage $vm $out -Version 2 -Compress -CompressionType Zstd -ErrorAction SilentlyContinue -ErrorVariable err
        $result | Should -BeNullOrEmpty
        Get-ErrorIds $err | Should -Be @('QcowPS.InvalidArgument')
        $out | Should -Not -Exist
    }

    It 'raw to qcow2 (-Format Raw): the raw disk becomes a qcow2 image with only its data' {
        $out = New-Name $dir 'from-raw'
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
        $out = New-Name $dir 'odd'
        $result = Convert-QcowImage $odd $out -Format Raw
        $result.VirtualSize | Should -Be 100352
        (Get-QemuImageInfo $out).'virtual-size' | Should -Be 100352
        Assert-QemuIdentical $odd $out -FormatA raw
    }

    It 'a raw file named on the command line is read as raw, as qemu-img reads it (issue 14)' {
        $out = New-Name $dir 'from-raw'
        $result = Convert-QcowImage -Path $vmRaw -Destination $out -ErrorAction Stop
        $result | Should -Not -BeNullOrEmpty
        Assert-QemuIdentical $vmRaw $out -FormatA raw
    }

    It 'qcow2 to raw (-DestinationFormat Raw): the bytes of the original disk, in a sparse file' {
        $out = New-Name $dir 'export' 'img'
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
        $out = New-Name $dir 'raw-conflict' 'img'
        $caught = $null
        try { Convert-QcowImage $vm $out -DestinationFormat Raw @Extra } catch { $caught = $_ }
        $caught | Should -Not -BeNullOrEmpty
        $caught.FullyQualifiedErrorId | Should -BeLike 'QcowPS.ConflictingParameters,*'
        $out | Should -Not -Exist
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
