#Requires -Version 7.0
<#
    "Parallel conversion ... with bounded memory" (README): the peak working set of a fresh pwsh that
    converts a 512 MiB image grows by far less than the image. Each conversion runs in its own child
    process, so the peak (VmHWM on Linux, via Process.PeakWorkingSet64) is that conversion's alone;
    a warm-up conversion of a small image first loads and compiles everything, and its peak is the
    baseline. The bound is generous (a quarter of the image): it catches a converter that holds the
    image, or an unbounded queue of chunks, not a few buffers more. No speed is asserted.
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

Describe 'Convert-QcowImage: bounded memory' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder -Prefix 'qcowps-pester-memory'
        $ImageSize = 512MB
        # Every 64 KiB cluster: 16 KiB of random bytes, then text; every cluster different.
        $big = Join-Path $dir 'big.raw'
        $random = [Random]::new(16)
        $text = [Text.Encoding]::ASCII.GetBytes(('qcow2 cluster refcount snapshot ' * 2048))
        $cluster = [byte[]]::new(64KB)
        $block = [byte[]]::new(4MB)
        $stream = [IO.File]::Create($big)
        try {
            for ($at = 0; $at -lt $ImageSize; $at += $block.Length) {
                for ($c = 0; $c -lt $block.Length; $c += $cluster.Length) {
                    $random.NextBytes($cluster)
                    [Array]::Copy($text, 0, $cluster, 16KB, 48KB)
                    [Array]::Copy($cluster, 0, $block, $c, $cluster.Length)
                }
                $stream.Write($block, 0, $block.Length)
            }
        } finally { $stream.Dispose() }
        $small = Join-Path $dir 'small.raw'
        [IO.File]::WriteAllBytes($small, (Get-FileBytes $big -Length 4MB))

        function Measure-ConversionPeak([string]$Options, [string]$Name) {
            $module = (Get-QcowPSModulePath).Replace("'", "''")
            $script = @"
Import-Module '$module'
`$ProgressPreference = 'SilentlyContinue'
Convert-QcowImage -LiteralPath '$small' -Format Raw -Destination '$(Join-Path $dir "warm-$Name.qcow2")' $Options | Out-Null
[GC]::Collect()
`$p = [Diagnostics.Process]::GetCurrentProcess(); `$p.Refresh(); 'baseline=' + `$p.PeakWorkingSet64
Convert-QcowImage -LiteralPath '$big' -Format Raw -Destination '$(Join-Path $dir "$Name.qcow2")' $Options | Out-Null
`$p.Refresh(); 'peak=' + `$p.PeakWorkingSet64
"@
            $lines = Invoke-ChildPwsh -Script $script
            $values = @{}
            foreach ($line in $lines) { if ($line -match '^(baseline|peak)=(\d+)$') { $values[$Matches[1]] = [long]$Matches[2] } }
            $values.Keys.Count | Should -Be 2 -Because "the child printed: $($lines -join ' | ')"
            [pscustomobject]@{ Baseline = $values.baseline; Peak = $values.peak; Growth = $values.peak - $values.baseline }
        }
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'converting 512 MiB <Name> raises the peak working set by less than 128 MiB' -ForEach @(
        @{ Name = 'with -Compress -CompressionType Zstd on every core'; Options = '-Compress -CompressionType Zstd'; File = 'zstd' }
        @{ Name = 'without compression'; Options = ''; File = 'plain' }
    ) {
        $m = Measure-ConversionPeak -Options $Options -Name $File
        Write-Host ("    {0}: baseline {1:N0} MiB, peak {2:N0} MiB, growth {3:N0} MiB" -f $File, ($m.Baseline / 1MB), ($m.Peak / 1MB), ($m.Growth / 1MB))
        $m.Baseline | Should -BeGreaterThan 0
        $m.Growth | Should -BeLessThan 128MB
        # The conversion did happen, and is whole.
        Invoke-QemuImg 'compare', '-f', 'raw', '-F', 'qcow2', $big, (Join-Path $dir "$File.qcow2") | Out-Null
    }
}
