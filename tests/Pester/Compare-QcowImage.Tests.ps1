#Requires -Version 7.0
<#
    Pester 5 tests of Compare-QcowImage: verifying copies; it must give the answers qemu-img compare gives.
    Images are made at run time in a temporary folder; QEMU's tools are the referee (TestHelpers.psm1).
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = Test-SkipWithoutQemu

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
    Import-QcowPSModule | Out-Null
    $ProgressPreference = 'SilentlyContinue'
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
