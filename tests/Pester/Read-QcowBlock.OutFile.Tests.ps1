#Requires -Version 7.0
<#
    Read-QcowBlock -OutFile: what its help promises beyond the bytes (which Read-QcowBlock.Tests.ps1
    compares with qemu-img convert -O raw): -Force replaces an existing file and nothing else does,
    -WhatIf writes nothing, long work reports progress (on a stepped clock, so the machine's speed
    does not matter), and one -OutFile takes the data of one image only.
    Images are made with qemu-img / qemu-io; expected bytes come from qemu-img convert -O raw.
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = Test-SkipWithoutQemu
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $QcowModule = Import-QcowPSModule
    $ProgressPreference = 'SilentlyContinue'
}

Describe 'Read-QcowBlock -OutFile: -Force, -WhatIf, progress, one image' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder -Prefix 'qcowps-pester-outfile'
        $image = New-QemuImage (Join-Path $dir 'disk.qcow2') 4M -Write 'write -P 0x5a 0 1M', 'write -P 0xa5 3M 512k'
        $other = New-QemuImage (Join-Path $dir 'other.qcow2') 4M -Write 'write -P 0x33 0 4M'
        $expected = Export-QemuRaw -Path $image -Destination (Join-Path $dir 'disk.expected.raw')
        $expectedHash = (Get-FileHash -LiteralPath $expected).Hash
        $old = [byte[]](1..200)
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'an existing file without -Force is a QcowPS.FileExists error and keeps its bytes' {
        $target = Join-Path $dir 'exists.raw'
        [IO.File]::WriteAllBytes($target, $old)
        Read-QcowBlock -LiteralPath $image -OutFile $target -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.FileExists,*'
        Get-BytesHash (Get-FileBytes $target) | Should -Be (Get-BytesHash $old)
    }

    It '-Force replaces an existing (longer) file with exactly the image''s bytes' {
        $target = Join-Path $dir 'forced.raw'
        [IO.File]::WriteAllBytes($target, (New-FilledBytes (6MB) 0x77))
        Read-QcowBlock -LiteralPath $image -OutFile $target -Force | Should -BeNullOrEmpty
        (Get-Item -LiteralPath $target).Length | Should -Be 4MB
        (Get-FileHash -LiteralPath $target).Hash | Should -Be $expectedHash
    }

    It '-WhatIf writes no new file and leaves an existing one alone, even with -Force' {
        $new = Join-Path $dir 'whatif-new.raw'
        Read-QcowBlock -LiteralPath $image -OutFile $new -WhatIf | Should -BeNullOrEmpty
        Test-Path -LiteralPath $new | Should -BeFalse

        $existing = Join-Path $dir 'whatif-existing.raw'
        [IO.File]::WriteAllBytes($existing, $old)
        Read-QcowBlock -LiteralPath $image -OutFile $existing -Force -WhatIf | Should -BeNullOrEmpty
        Get-BytesHash (Get-FileBytes $existing) | Should -Be (Get-BytesHash $old)
        # The same call without -WhatIf does write, so the test above could fail.
        Read-QcowBlock -LiteralPath $image -OutFile $new
        (Get-FileHash -LiteralPath $new).Hash | Should -Be $expectedHash
    }

    It 'two images for one -OutFile: a terminating QcowPS.OneImagePerOutFile, nothing written' {
        $target = Join-Path $dir 'two.raw'
        { Read-QcowBlock -LiteralPath $image, $other -OutFile $target } |
            Should -Throw -ErrorId 'QcowPS.OneImagePerOutFile,QcowPS.Cmdlets.ReadQcowBlockCommand'
        Test-Path -LiteralPath $target | Should -BeFalse
    }

    It 'two images down the pipeline for one -OutFile: the second stops the command, the file holds the first' {
        $target = Join-Path $dir 'piped.raw'
        { $image, $other | Read-QcowBlock -OutFile $target } |
            Should -Throw -ErrorId 'QcowPS.OneImagePerOutFile,QcowPS.Cmdlets.ReadQcowBlockCommand'
        (Get-FileHash -LiteralPath $target).Hash | Should -Be $expectedHash
    }

    It 'long work reports growing percentages on activity 1 and completes' {
        $big = New-QemuImage (Join-Path $dir 'big.qcow2') 256M -Write 'write -P 0x61 0 8M', 'write -P 0x62 200M 8M'
        $script = 'param($Source, $Target) Read-QcowBlock -LiteralPath $Source -OutFile $Target'
        # Each reading of the stepped clock is 1/8 s of virtual time.
        $run = Invoke-QcowWithSteppedClock -Script $script -ArgumentList $big, (Join-Path $dir 'big.raw') -ActivityId 1 -StepSeconds 0.125
        $run.Errors | Should -BeNullOrEmpty
        $run.Readings | Should -BeGreaterThan 6 -Because 'the premise: the export reads the clock as it goes'
        $records = $run.Records
        $records.Count | Should -BeGreaterThan 1
        $records[-1].RecordType | Should -Be 'Completed'
        $percents = @($records | Where-Object RecordType -eq 'Processing' | ForEach-Object PercentComplete)
        $percents.Count | Should -BeGreaterThan 0
        $percents | ForEach-Object { $_ | Should -BeIn (0..100) }
        for ($i = 1; $i -lt $percents.Count; $i++) { $percents[$i] | Should -BeGreaterThan $percents[$i - 1] }
        $records[0].Activity | Should -BeLike "Reading *big.qcow2"
        (Get-FileHash -LiteralPath (Join-Path $dir 'big.raw')).Hash |
            Should -Be (Get-FileHash -LiteralPath (Export-QemuRaw -Path $big -Destination (Join-Path $dir 'big.expected.raw'))).Hash
    }

    It 'a read that ends within the first half second draws no progress bar' {
        $script = 'param($Source, $Target) Read-QcowBlock -LiteralPath $Source -OutFile $Target'
        $run = Invoke-QcowWithSteppedClock -Script $script -ArgumentList $image, (Join-Path $dir 'quick.raw') -ActivityId 1 -StepSeconds 0
        $run.Errors | Should -BeNullOrEmpty
        $run.Readings | Should -BeGreaterThan 1
        $run.Records.Count | Should -Be 0
    }
}
