#Requires -Version 7.0
<#
.SYNOPSIS
    Builds QcowPS and runs every test: the xunit engine tests and the Pester module tests.

.DESCRIPTION
    1. dotnet build QcowPS.sln -c Release (left out with -SkipBuild).
    2. dotnet test tests/QcowPS.Engine.Tests (Release, --no-build); its counts are read from the TRX file.
    3. dotnet restore tests/Pester/PesterBootstrap, which puts Pester 5.7.1 in the NuGet packages folder,
       then Invoke-Pester in a child `dotnet pwsh`, so that the module DLL the tests load is never locked
       in this process. The child writes its counts to a small JSON file.
    Prints one line per suite and, as the very last line, "N passed, N failed" over both suites.
    Exits 0 only when both suites ran at least one test and nothing failed. A suite that could not run,
    or ran no test, counts as 1 failed, never as 0 passed.

.PARAMETER SkipBuild
    Do not build the solution first (it must already be built in Release).

.PARAMETER Filter
    Passed to `dotnet test --filter`, e.g. "FullyQualifiedName~Refcount". Pester still runs.

.PARAMETER PesterPath
    Pester test files or folders to run instead of tests/Pester.

.EXAMPLE
    dotnet tool restore && dotnet pwsh -NoProfile -File build/test.ps1

.EXAMPLE
    dotnet pwsh -NoProfile -File build/test.ps1 -SkipBuild -Filter "FullyQualifiedName~Header" -PesterPath tests/Pester/Bootstrap.Tests.ps1
#>
[CmdletBinding()]
param(
    [switch]$SkipBuild,
    [string]$Filter,
    [string[]]$PesterPath
)

Set-StrictMode -Version 3.0
$ErrorActionPreference = 'Stop'

$PesterVersion = '5.7.1'
$Repo = Split-Path -Parent $PSScriptRoot
$Solution = Join-Path $Repo 'QcowPS.sln'
$EngineTests = Join-Path $Repo 'tests/QcowPS.Engine.Tests/QcowPS.Engine.Tests.csproj'
$PesterBootstrap = Join-Path $Repo 'tests/Pester/PesterBootstrap/PesterBootstrap.csproj'
$Results = Join-Path ([IO.Path]::GetTempPath()) ('qcowps-test-' + [Guid]::NewGuid().ToString('N').Substring(0, 8))
New-Item -ItemType Directory -Path $Results | Out-Null

# Resolve -PesterPath against the caller's folder, before anything changes location.
$pesterTargets = if ($PesterPath) {
    # Under `pwsh -File`, "-PesterPath a,b" arrives as one string "a,b": split it as -Command would have.
    $PesterPath | ForEach-Object { $_ -split ',' } | Where-Object { $_ } |
        ForEach-Object { $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($_) }
} else {
    @(Join-Path $Repo 'tests/Pester')
}

$suites = [System.Collections.Generic.List[object]]::new()

function Add-Suite([string]$Name, [int]$Passed, [int]$Failed, [int]$Skipped, [string]$Note, [string[]]$FailedTests = @()) {
    $suites.Add([pscustomobject]@{ Name = $Name; Passed = $Passed; Failed = $Failed; Skipped = $Skipped; Note = $Note; FailedTests = $FailedTests })
}

# CI keeps only the tail of the output, so the names of failed tests are repeated next to the counts.
function Get-FirstLine([string]$Text) {
    if (-not $Text) { return '' }
    $line = ($Text -split "`r?`n" | Where-Object { $_.Trim() } | Select-Object -First 1)
    if ($null -eq $line) { return '' }
    $line = $line.Trim()
    if ($line.Length -gt 300) { $line = $line.Substring(0, 300) + '...' }
    return $line
}

function Write-Step([string]$Text) {
    Write-Host ''
    Write-Host "==> $Text"
}

function Write-Summary {
    $passed = ($suites | Measure-Object -Property Passed -Sum).Sum
    $failed = ($suites | Measure-Object -Property Failed -Sum).Sum
    Write-Host ''
    foreach ($s in $suites) {
        $line = '{0,-7} passed {1}, failed {2}, skipped {3}' -f $s.Name, $s.Passed, $s.Failed, $s.Skipped
        if ($s.Note) { $line += "  ($($s.Note))" }
        Write-Host $line
        foreach ($name in $s.FailedTests) { Write-Host "  failed: $name" }
    }
    if ($failed -gt 0) {
        Write-Host "Test results kept in $Results"
    } else {
        Remove-Item -LiteralPath $Results -Recurse -Force -ErrorAction SilentlyContinue
    }
    Write-Host "$passed passed, $failed failed"
    return [int]$failed
}

function Get-TrxCount([System.Xml.XmlElement]$Counters, [string[]]$Names) {
    $sum = 0
    foreach ($n in $Names) {
        $value = $Counters.GetAttribute($n)
        if ($value) { $sum += [int]$value }
    }
    return $sum
}

# --- 1. Build ---------------------------------------------------------------------------------------
if (-not $SkipBuild) {
    Write-Step "dotnet build QcowPS.sln -c Release"
    & dotnet build $Solution -c Release
    if ($LASTEXITCODE -ne 0) {
        Add-Suite 'xunit' 0 1 0 "did not run: the build failed (exit $LASTEXITCODE)"
        Add-Suite 'Pester' 0 1 0 'did not run: the build failed'
        Write-Summary | Out-Null
        exit 1
    }
}

# --- 2. xunit engine tests --------------------------------------------------------------------------
try {
    Write-Step ('dotnet test tests/QcowPS.Engine.Tests' + $(if ($Filter) { " --filter '$Filter'" }))
    $trx = Join-Path $Results 'engine.trx'
    $testArgs = @('test', $EngineTests, '-c', 'Release', '--no-build',
        '--logger', 'trx;LogFileName=engine.trx', '--results-directory', $Results)
    if ($Filter) { $testArgs += @('--filter', $Filter) }
    & dotnet @testArgs
    $testExit = $LASTEXITCODE

    if (-not (Test-Path -LiteralPath $trx)) {
        Add-Suite 'xunit' 0 1 0 "did not run: no TRX file (dotnet test exit $testExit)"
    } else {
        [xml]$doc = Get-Content -Raw -LiteralPath $trx
        $counters = $doc.TestRun.ResultSummary.Counters
        $passed = Get-TrxCount $counters 'passed'
        $failed = Get-TrxCount $counters 'failed', 'error', 'timeout', 'aborted'
        # Skipped xunit tests are left out of 'executed' without being counted anywhere else.
        $skipped = [Math]::Max(0, (Get-TrxCount $counters 'total') - $passed - $failed)
        $note = ''
        $failedTests = @(
            foreach ($result in $doc.GetElementsByTagName('UnitTestResult')) {
                if ($result.GetAttribute('outcome') -notin 'Passed', 'NotExecuted') {
                    $message = $result.GetElementsByTagName('Message') | Select-Object -First 1
                    $text = if ($message) { Get-FirstLine $message.InnerText } else { '' }
                    "$($result.GetAttribute('testName')) -- $text"
                }
            })
        if ($passed + $failed -eq 0) {
            $failed = 1; $note = 'ran no tests'
        } elseif ($testExit -ne 0 -and $failed -eq 0) {
            $failed = 1; $note = "dotnet test exited $testExit although no test failed"
        }
        Add-Suite 'xunit' $passed $failed $skipped $note $failedTests
    }
} catch {
    Write-Host "xunit suite could not run: $_"
    Add-Suite 'xunit' 0 1 0 "did not run: $_"
}

# --- 3. Pester module tests -------------------------------------------------------------------------
try {
    Write-Step "Pester $PesterVersion on $($pesterTargets -join ', ')"
    & dotnet restore $PesterBootstrap
    if ($LASTEXITCODE -ne 0) { throw "dotnet restore of PesterBootstrap failed (exit $LASTEXITCODE)" }

    # The restore records the packages folder it used (NUGET_PACKAGES, NuGet.Config or ~/.nuget/packages).
    $assets = Get-Content -Raw -LiteralPath (Join-Path (Split-Path $PesterBootstrap) 'obj/project.assets.json') | ConvertFrom-Json
    $manifest = $assets.packageFolders.PSObject.Properties.Name |
        ForEach-Object { Join-Path $_ "pester/$PesterVersion/tools/Pester.psd1" } |
        Where-Object { Test-Path -LiteralPath $_ } |
        Select-Object -First 1
    if (-not $manifest) { throw "Pester.psd1 $PesterVersion not found in the NuGet packages folder after restore" }

    $json = Join-Path $Results 'pester.json'
    $child = Join-Path $Results 'run-pester.ps1'
    Set-Content -LiteralPath $child -Encoding utf8 -Value @'
param([string]$Manifest, [string]$Paths, [string]$ResultFile)
$ErrorActionPreference = 'Stop'
$summary = [ordered]@{ ran = $false; passed = 0; failed = 0; skipped = 0; total = 0; version = ''; error = ''; failedTests = @() }
try {
    Import-Module -Name $Manifest -Force
    $summary.version = (Get-Module -Name Pester).Version.ToString()
    $config = New-PesterConfiguration
    $config.Run.Path = [string[]]($Paths -split [IO.Path]::PathSeparator)
    $config.Run.PassThru = $true
    $config.Output.Verbosity = 'Detailed'
    # The tests run with PowerShell's default error preference: per-file errors must stay non-terminating.
    $ErrorActionPreference = 'Continue'
    if ([Console]::IsOutputRedirected) { $config.Output.RenderMode = 'Plaintext' }
    $run = Invoke-Pester -Configuration $config
    if ($null -eq $run) { throw 'Invoke-Pester returned no result (no test files found?)' }
    $summary.ran = $true
    $summary.passed = [int]$run.PassedCount
    $summary.failed = [int]$run.FailedCount + [int]$run.FailedContainersCount
    if ($run.Result -eq 'Failed' -and $summary.failed -eq 0) { $summary.failed = [Math]::Max(1, [int]$run.FailedBlocksCount) }
    $summary.skipped = [int]$run.SkippedCount
    $summary.total = [int]$run.TotalCount
    $summary.failedTests = @(
        foreach ($test in $run.Failed) {
            $message = if ($test.ErrorRecord) { ("$($test.ErrorRecord[0])" -split "`r?`n")[0] } else { '' }
            if ($message.Length -gt 300) { $message = $message.Substring(0, 300) + '...' }
            "$($test.ExpandedPath) -- $message"
        }
        foreach ($container in $run.FailedContainers) { "container $($container.Item) -- $($container.ErrorRecord | Select-Object -First 1)" })
} catch {
    $summary.error = "$_"
    Write-Host "Pester could not run: $_"
}
$summary | ConvertTo-Json | Set-Content -LiteralPath $ResultFile -Encoding utf8
'@

    # `dotnet pwsh` needs the repository's tool manifest, so start the child from the repository root.
    Push-Location -LiteralPath $Repo
    try {
        & dotnet pwsh -NoProfile -NonInteractive -File $child -Manifest $manifest `
            -Paths ($pesterTargets -join [IO.Path]::PathSeparator) -ResultFile $json
        $childExit = $LASTEXITCODE
    } finally {
        Pop-Location
    }

    if (-not (Test-Path -LiteralPath $json)) {
        Add-Suite 'Pester' 0 1 0 "did not run: the child pwsh exited $childExit without results"
    } else {
        $r = Get-Content -Raw -LiteralPath $json | ConvertFrom-Json
        if (-not $r.ran) {
            Add-Suite 'Pester' 0 1 0 "did not run: $($r.error)"
        } elseif ([int]$r.passed + [int]$r.failed -eq 0) {
            Add-Suite 'Pester' 0 1 $r.skipped 'ran no tests'
        } else {
            Add-Suite 'Pester' $r.passed $r.failed $r.skipped "Pester $($r.version)" @($r.failedTests)
        }
    }
} catch {
    Write-Host "Pester suite could not run: $_"
    Add-Suite 'Pester' 0 1 0 "did not run: $_"
}

$failedTotal = Write-Summary
exit $(if ($failedTotal -eq 0) { 0 } else { 1 })
