#Requires -Version 7.0
<#
.SYNOPSIS
    Benchmarks Convert-QcowImage against qemu-img convert on the same data in the same run.

.DESCRIPTION
    Prepares (once, in bench/data, ignored by git) a 3 GiB raw disk holding an ext4 file system
    filled from /usr/share/dotnet and /usr/share/doc (mke2fs -t ext4 -d): real files, zeros and
    free space. Then times each conversion with qemu-img and with QcowPS (a fresh PowerShell
    process running the cmdlet, so start-up and module load count), several runs each, taken in
    turn, and prints the medians, the ratios, both output sizes and QcowPS's peak memory.

    QcowPS runs in two PowerShells: the one of the repo's tool manifest (the .NET-tool package,
    whose assemblies are not precompiled, so it JIT-compiles ~5,000 methods at every start), and a
    copy of the same PowerShell 7.6.9 with its start-up assemblies precompiled by crossgen2
    (bench/PwshPrecompile), as PowerShell's released packages ship them. The copy is made once in
    the data folder.

.EXAMPLE
    dotnet tool restore && dotnet build -c Release && dotnet pwsh bench/run.ps1 -Runs 3
#>
[CmdletBinding(PositionalBinding = $false)]
param(
    [int]$Runs = 3,
    [string]$DataDir = (Join-Path $PSScriptRoot 'data'),
    [string[]]$Row,
    # Large: the 3 GiB disk (764 MiB of files); Small: a 1 GiB disk holding /usr/share/dotnet only.
    [ValidateSet('Large', 'Small')][string]$DataSet = 'Large',
    # Only the rows timed in one PowerShell session (bench/InSession.ps1), not the whole-process rows.
    [switch]$InSessionOnly
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
$repo = Split-Path -Parent $PSScriptRoot
$module = Join-Path $repo 'QcowPS.psd1'
if (-not (Test-Path (Join-Path $repo 'bin/QcowPS.dll'))) { throw "Build first: dotnet build -c Release" }
foreach ($tool in 'qemu-img', 'mke2fs') {
    if (-not (Get-Command $tool -ErrorAction Ignore)) { throw "$tool is missing: apt-get install -y qemu-utils e2fsprogs" }
}
New-Item -ItemType Directory -Force -Path $DataDir | Out-Null
$setPrefix = if ($DataSet -eq 'Small') { 'disk-1g' } else { 'disk' }
$raw = Join-Path $DataDir "$setPrefix.raw"
$plain = Join-Path $DataDir "$setPrefix-plain.qcow2"
$zlib = Join-Path $DataDir "$setPrefix-zlib.qcow2"
$setSize = if ($DataSet -eq 'Small') { '1G' } else { '3G' }
$setFolders = if ($DataSet -eq 'Small') { @('/usr/share/dotnet') } else { @('/usr/share/dotnet', '/usr/share/doc') }
$precompiledHome = Join-Path $DataDir 'pwsh-precompiled'

# --- data ------------------------------------------------------------------------------------------
if (-not (Test-Path $raw)) {
    Write-Host "Preparing $raw ($setSize ext4 with $($setFolders -join ' and '))..."
    $staging = Join-Path $DataDir 'staging'
    Remove-Item -Recurse -Force $staging -ErrorAction Ignore
    New-Item -ItemType Directory -Path $staging | Out-Null
    foreach ($folder in $setFolders) { & cp -a $folder (Join-Path $staging (Split-Path -Leaf $folder)) }
    & truncate -s $setSize "$raw.tmp"
    & mke2fs -q -F -t ext4 -d $staging "$raw.tmp"
    if ($LASTEXITCODE -ne 0) { throw "mke2fs failed" }
    Remove-Item -Recurse -Force $staging
    Move-Item "$raw.tmp" $raw
}
if (-not (Test-Path $plain)) { & qemu-img convert -O qcow2 $raw $plain }
if (-not (Test-Path $zlib)) { & qemu-img convert -c -O qcow2 $raw $zlib }
if (-not $InSessionOnly -and -not (Test-Path (Join-Path $precompiledHome 'pwsh.dll'))) {
    Write-Host "Precompiling PowerShell $($PSVersionTable.PSVersion) into $precompiledHome (once)..."
    $compiled = Join-Path $DataDir 'pwsh-precompile-out'
    & dotnet publish (Join-Path $PSScriptRoot 'PwshPrecompile') -c Release -o $compiled "-p:PwshDir=$PSHOME" -nologo -v q | Out-Host
    if ($LASTEXITCODE -ne 0) { throw "Precompiling PowerShell failed" }
    Remove-Item -Recurse -Force "$precompiledHome.tmp" -ErrorAction Ignore
    Copy-Item -Recurse $PSHOME "$precompiledHome.tmp"
    # Only the assemblies PowerShell itself has at its top level are replaced (not this project's own).
    Get-ChildItem $compiled -Filter *.dll | Where-Object { Test-Path (Join-Path "$precompiledHome.tmp" $_.Name) } |
        ForEach-Object { Copy-Item $_.FullName (Join-Path "$precompiledHome.tmp" $_.Name) -Force }
    Remove-Item -Recurse -Force $compiled
    Move-Item "$precompiledHome.tmp" $precompiledHome
}

# --- rows ------------------------------------------------------------------------------------------
$out = Join-Path $DataDir 'out'
New-Item -ItemType Directory -Force -Path $out | Out-Null
$rows = @(
    @{ Name = 'raw -> qcow2';                Src = $raw;   Qemu = @('-f', 'raw', '-O', 'qcow2');                          Ps = "-Format Raw"
       Params = @{ Format = 'Raw' }; WarmName = 'warm.raw' }
    @{ Name = 'raw -> qcow2 compressed zlib'; Src = $raw;  Qemu = @('-f', 'raw', '-c', '-O', 'qcow2');                    Ps = "-Format Raw -Compress"
       Params = @{ Format = 'Raw'; Compress = $true }; WarmName = 'warm.raw' }
    @{ Name = 'raw -> qcow2 compressed zstd'; Src = $raw;  Qemu = @('-f', 'raw', '-c', '-O', 'qcow2', '-o', 'compression_type=zstd'); Ps = "-Format Raw -Compress -CompressionType Zstd"
       Params = @{ Format = 'Raw'; Compress = $true; CompressionType = 'Zstd' }; WarmName = 'warm.raw' }
    @{ Name = 'zlib qcow2 -> raw';           Src = $zlib;  Qemu = @('-O', 'raw');                                          Ps = "-DestinationFormat Raw"
       Params = @{ DestinationFormat = 'Raw' }; WarmName = 'warm-zlib.qcow2' }
    @{ Name = 'plain qcow2 -> raw';          Src = $plain; Qemu = @('-O', 'raw');                                          Ps = "-DestinationFormat Raw"
       Params = @{ DestinationFormat = 'Raw' }; WarmName = 'warm-plain.qcow2' }
)
if ($Row) {
    $patterns = $Row | ForEach-Object { $_ -split ',' } | ForEach-Object { $_.Trim() }  # -File passes 'a,b' as one string
    $rows = $rows | Where-Object { $n = $_.Name; $patterns | Where-Object { $n -like $_ } }
}

# Each run times every command of a row once, in turn, so that the machine's drift over the minutes
# (page cache, other load) falls on all of them alike; the table shows the medians.
function Measure-Row([scriptblock[]]$Actions, [string[]]$Outputs) {
    $times = @(foreach ($a in $Actions) { , [System.Collections.Generic.List[double]]::new() })
    foreach ($i in 1..$Runs) {
        for ($k = 0; $k -lt $Actions.Count; $k++) {
            # Deleting the previous output and writing back dirty pages happen before the clock starts.
            Remove-Item $Outputs[$k] -ErrorAction Ignore
            & sync
            $watch = [Diagnostics.Stopwatch]::StartNew()
            & $Actions[$k]
            $watch.Stop()
            $times[$k].Add($watch.Elapsed.TotalSeconds)
        }
    }
    foreach ($t in $times) { Get-Median $t }
}
function Get-Median($Values) { ($Values | Sort-Object)[[int][Math]::Floor(@($Values).Count / 2)] }

# The PowerShell that runs this script, started directly (as an installed pwsh starts); `dotnet pwsh`
# would add the .NET CLI's tool-manifest lookup (about 0.35 s here) to every run.
function Get-PwshCommand([string]$PwshHome) {
    $exe = Join-Path $PwshHome 'pwsh'
    if (Test-Path $exe) { @($exe) } else { @('dotnet', (Join-Path $PwshHome 'pwsh.dll')) }
}
$toolPwsh = Get-PwshCommand $PSHOME
$precompiledPwsh = Get-PwshCommand $precompiledHome
Write-Host "QcowPS runs in: $($toolPwsh -join ' ') (the tool package) and $($precompiledPwsh -join ' ') (precompiled)"

# --- in session ------------------------------------------------------------------------------------
# One PowerShell, the module imported once and warmed, every row taken in turn with qemu-img (as a
# runbook converting many images sees it); the whole-process rows below follow.
$sessionRows = @($rows | ForEach-Object { [ordered]@{ Name = $_.Name; Src = $_.Src; Qemu = $_.Qemu; Ps = $_.Params; WarmName = $_.WarmName } })
$warmSource = Join-Path $DataDir 'warm-source.raw'
if (-not (Test-Path $warmSource)) {
    # 64 MiB of the data set's first clusters: file-system metadata and files, enough to compile every path.
    & qemu-img dd -f raw -O raw bs=1M count=64 "if=$raw" "of=$warmSource.tmp"
    Move-Item "$warmSource.tmp" $warmSource
}
$sessionExe, $sessionRest = Get-PwshCommand $PSHOME
$sessionJson = & $sessionExe @sessionRest -NoProfile -NonInteractive -File (Join-Path $PSScriptRoot 'InSession.ps1') `
    -RowsJson (ConvertTo-Json -Depth 5 -Compress $sessionRows) -Runs $Runs -OutDir $out -WarmSource $warmSource
if ($LASTEXITCODE) { throw "The in-session benchmark failed" }
$sessionResults = $sessionJson | ConvertFrom-Json
Write-Host "In session ($DataSet data set, $(if ($env:QCOWPS_KERNEL_COPY) { "QCOWPS_KERNEL_COPY=$env:QCOWPS_KERNEL_COPY" } else { 'kernel copy: default' })):"
$sessionResults | Format-Table -AutoSize | Out-String -Width 400 | Write-Host
if ($InSessionOnly) { return $sessionResults }


$results = foreach ($r in $rows) {
    $qemuOut = Join-Path $out 'qemu.out'
    $psOut = Join-Path $out 'qcowps.out'
    $psOut2 = Join-Path $out 'qcowps-precompiled.out'
    Write-Host "== $($r.Name)"
    $qemuArgs = $r.Qemu
    $peakFile = Join-Path $out 'peak.txt'
    $engineFile = Join-Path $out 'engine.txt'
    # The child writes its bookkeeping with .NET calls: Set-Content would autoload a module and add its start-up to the time.
    $scriptFor = {
        param($dest)
        "Import-Module '$module'; `$r = Convert-QcowImage -LiteralPath '$($r.Src)' -Destination '$dest' $($r.Ps) -Force; " +
        "[IO.File]::AppendAllText('$peakFile', [string][Diagnostics.Process]::GetCurrentProcess().PeakWorkingSet64 + [Environment]::NewLine); " +
        "[IO.File]::AppendAllText('$engineFile', [string]`$r.Duration.TotalSeconds + [Environment]::NewLine)"
    }
    $script1 = & $scriptFor $psOut
    $script2 = & $scriptFor $psOut2
    Remove-Item $engineFile, $peakFile -ErrorAction Ignore
    Push-Location $repo
    try {
        $exe1, $rest1 = $toolPwsh
        $exe2, $rest2 = $precompiledPwsh
        $qemuTime, $psTime, $psTime2 = Measure-Row @(
            { & qemu-img convert @qemuArgs $r.Src $qemuOut; if ($LASTEXITCODE) { throw 'qemu-img failed' } }
            { & $exe1 @rest1 -NoProfile -NonInteractive -Command $script1; if ($LASTEXITCODE) { throw 'QcowPS failed' } }
            { & $exe2 @rest2 -NoProfile -NonInteractive -Command $script2; if ($LASTEXITCODE) { throw 'QcowPS (precompiled PowerShell) failed' } }
        ) @($qemuOut, $psOut, $psOut2)
    } finally { Pop-Location }
    # Same guest data: checked once per row, for both QcowPS outputs.
    $compare = & qemu-img compare $qemuOut $psOut 2>&1
    $same = $LASTEXITCODE -eq 0
    $compare2 = & qemu-img compare $qemuOut $psOut2 2>&1
    $same2 = $LASTEXITCODE -eq 0
    [pscustomobject]@{
        Conversion          = $r.Name
        'qemu-img s'        = [Math]::Round($qemuTime, 2)
        'QcowPS s'          = [Math]::Round($psTime, 2)
        'speed-up'          = [Math]::Round($qemuTime / $psTime, 2)
        'QcowPS s (precompiled pwsh)' = [Math]::Round($psTime2, 2)
        'speed-up (precompiled pwsh)' = [Math]::Round($qemuTime / $psTime2, 2)
        'in-cmdlet s'       = [Math]::Round((Get-Median (Get-Content $engineFile | ForEach-Object { [double]$_ })), 2)
        'qemu-img MiB'      = [Math]::Round((Get-Item $qemuOut).Length / 1MB, 1)
        'QcowPS MiB'        = [Math]::Round((Get-Item $psOut).Length / 1MB, 1)
        'size ratio'        = [Math]::Round((Get-Item $psOut).Length / [Math]::Max([long]1, [long](Get-Item $qemuOut).Length), 3)
        'peak MiB'          = [Math]::Round((Get-Content $peakFile | ForEach-Object { [long]$_ } | Measure-Object -Maximum).Maximum / 1MB, 0)
        'same data'         = if ($same -and $same2) { 'yes' } else { "NO: $compare $compare2" }
    }
    Remove-Item $qemuOut, $psOut, $psOut2 -ErrorAction Ignore
}
$results | Format-Table -AutoSize | Out-String -Width 400 | Write-Host
"Runs: $Runs (median). Machine: $([Environment]::ProcessorCount) cores, $(if (Test-Path /proc/meminfo) { [Math]::Round(([long]((Get-Content /proc/meminfo -TotalCount 1) -replace '\D', '')) / 1MB) } else { '?' }) GiB; $(qemu-img --version | Select-Object -First 1); $(Get-Date -Format 'yyyy-MM-dd')" | Write-Host
$results
