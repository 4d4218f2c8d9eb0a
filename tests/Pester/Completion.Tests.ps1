#Requires -Version 7.0
<#
    Tab completion, tested the way a console asks for it: through TabExpansion2 on a typed line.
    Snapshot names and IDs come from the image named on the same line; sizes are offered in numeric
    order; format names in one spelling.
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = Test-SkipWithoutQemu
    Import-QcowPSModule | Out-Null
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-QcowPSModule | Out-Null

    function script:Complete([string]$Line) {
        @((TabExpansion2 -inputScript $Line -cursorColumn $Line.Length).CompletionMatches.CompletionText)
    }
}

Describe 'Tab completion' -Skip:$SkipImages {
    BeforeAll {
        $dir = New-QcowTestFolder -Prefix 'qcowps-complete'
        $img = New-QemuImage -Path (Join-Path $dir 'disk [1].qcow2') -Size 4M
        foreach ($s in 'before-upgrade', 'nightly 1', 'after') { Invoke-QemuImg 'snapshot', '-c', $s, $img | Out-Null }
        $quoted = "'" + $img.Replace("'", "''") + "'"
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'qemu-img and qemu-io are on PATH' { Assert-QemuToolsInIt }

    It 'completes snapshot names for Remove-QcowSnapshot -Name, filtered by what is typed' {
        $matches = Complete "Remove-QcowSnapshot -LiteralPath $quoted -Name be"
        $matches | Should -Be @('before-upgrade')
    }

    It 'quotes snapshot names with spaces' {
        Complete "Restore-QcowSnapshot -LiteralPath $quoted -Name nig" | Should -Be @("'nightly 1'")
    }

    It 'completes snapshot IDs for -Id' {
        Complete "Get-QcowSnapshot -LiteralPath $quoted -Id " | Should -Be @('1', '2', '3')
    }

    It 'completes -Snapshot of Read-QcowBlock, Get-QcowTable, Get-QcowCluster and Convert-QcowImage' {
        foreach ($cmd in 'Read-QcowBlock', 'Get-QcowTable', 'Get-QcowCluster', 'Convert-QcowImage') {
            Complete "$cmd -LiteralPath $quoted -Snapshot af" | Should -Be @('after') -Because $cmd
        }
    }

    It 'completes with the image given by position, too' {
        Complete "Remove-QcowSnapshot $quoted -Name af" | Should -Be @('after')
    }

    It 'offers nothing (and no error) when the image does not open' {
        Complete "Remove-QcowSnapshot -LiteralPath '$dir/missing.qcow2' -Name a" | Should -BeNullOrEmpty
    }

    It 'offers -ClusterSize and -RefcountBits in numeric order' {
        $sizes = Complete 'New-QcowImage -ClusterSize '
        $sizes.Count | Should -BeGreaterThan 3
        ($sizes | ForEach-Object { [long]$_ }) | Should -Be ($sizes | ForEach-Object { [long]$_ } | Sort-Object)
        $bits = Complete 'New-QcowImage -RefcountBits '
        ($bits | ForEach-Object { [int]$_ }) | Should -Be @(1, 2, 4, 8, 16, 32, 64)
    }

    It 'offers format names in one spelling for -Format, -BackingFormat and -DestinationFormat' {
        $a = Complete 'Get-QcowInfo -Format '
        $b = Complete 'New-QcowImage -BackingFormat '
        $c = Complete 'Convert-QcowImage -DestinationFormat '
        @($b).Count | Should -BeGreaterThan 0
        foreach ($name in @($b) + @($c)) { ($a -ccontains $name) | Should -BeTrue -Because "'$name' is spelled as -Format spells it ($($a -join ', '))" }
    }
}
