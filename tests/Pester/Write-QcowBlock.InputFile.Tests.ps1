#Requires -Version 7.0
<#
    Write-QcowBlock -InputFile: a 4 MiB piece of the file that is all zeros is stored as with -Zero
    (zero clusters in a version 3 image; released clusters in a version 2 image without a backing
    file), not as data clusters full of zeros. qemu-img map is the judge; qemu-img convert -O raw
    gives the bytes.
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

Describe 'Write-QcowBlock -InputFile: all-zero pieces become zero clusters' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder -Prefix 'qcowps-pester-inputfile'
        # 12 MiB: random, all zeros, then random with a zero run too short to be a piece of its own.
        $content = New-RandomBytes -Length (12MB) -Seed 16
        [Array]::Clear($content, 4MB, 4MB)
        [Array]::Clear($content, 9MB, 1MB)
        $inputFile = Join-Path $dir 'input.bin'
        [IO.File]::WriteAllBytes($inputFile, $content)
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'version <Compat>: the zero piece maps as <Expect>, the rest as data, and the bytes are the file''s' -ForEach @(
        @{ Compat = '1.1'; Present = $true; Expect = 'zero clusters (present, zero, no data)' }
        @{ Compat = '0.10'; Present = $false; Expect = 'released clusters (not present, zero, no data)' }
    ) {
        $img = New-QemuImage (Join-Path $dir "v$Compat.qcow2") 16M -Option @{ compat = $Compat } -Write 'write -P 0xff 0 16M'
        Write-QcowBlock -LiteralPath $img -Offset 0 -InputFile $inputFile

        $map = @(Get-QemuMap $img)
        $inZeroPiece = @($map | Where-Object { $_.start -lt 8MB -and $_.start + $_.length -gt 4MB })
        $inZeroPiece | Should -Not -BeNullOrEmpty
        foreach ($run in $inZeroPiece) {
            $run.start | Should -BeGreaterOrEqual 4MB -Because 'the zero piece starts a run of its own'
            $run.start + $run.length | Should -BeLessOrEqual 8MB -Because 'the zero piece ends a run of its own'
            $run.zero | Should -BeTrue
            $run.data | Should -BeFalse
            $run.present | Should -Be $Present
        }
        ($inZeroPiece | Measure-Object -Property length -Sum).Sum | Should -Be 4MB
        # Everything else of the file, the short zero run included, is data.
        foreach ($run in @($map | Where-Object { $_.start -lt 12MB -and ($_.start -ge 8MB -or $_.start + $_.length -le 4MB) })) {
            $run.data | Should -BeTrue -Because "$($run.start)+$($run.length) holds the file's data"
        }

        $raw = Export-QemuRaw -Path $img -Destination (Join-Path $dir "v$Compat.raw")
        Get-BytesHash (Get-FileBytes $raw -Offset 0 -Length (12MB)) | Should -Be (Get-BytesHash $content)
        Get-QemuIoPatternMismatch $img '0xff 12M 4M' | Should -BeNullOrEmpty
        (Get-QemuCheck $img).ExitCode | Should -Be 0
    }
}
