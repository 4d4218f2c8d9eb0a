#Requires -Version 7.0
<#
    NBD client benchmark: Convert-QcowImage nbd+unix://… -Destination out.raw against nbdcopy and
    qemu-img convert, all three reading the same qemu-nbd export (read-only, allocation depth on) of
    the benchmark image. Runs are taken in turn (the host's speed drifts); medians are reported, as
    ratios to the peer tools measured in the same run. QcowPS runs twice: against that export (qemu-nbd
    -e 0 sets CAN_MULTI_CONN, so it opens four connections, as nbdcopy does) and against a second
    qemu-nbd of the same image with -e 1 (no multi-conn: one connection), to weigh several connections. QcowPS is timed in this session (the module
    is imported once), the peers as processes. Every output is compared with qemu-img compare.

    dotnet tool restore && dotnet build -c Release && dotnet pwsh -NoProfile -File bench/nbdclient.ps1 -Runs 5
#>
param(
    [int]$Runs = 5,
    [string]$Data = '/usr/share/dotnet',
    [string]$DiskSize = '2G'
)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$env:PATH = "$($env:PATH):/usr/sbin"
Import-Module (Join-Path $PSScriptRoot '../QcowPS.psd1')
Import-Module (Join-Path $PSScriptRoot '../tests/Pester/TestHelpers.psm1')  # Wait-UnixSocketListening

$dir = Join-Path ([IO.Path]::GetTempPath()) ('qcowps-nbdbench-' + [Guid]::NewGuid().ToString('N').Substring(0, 8))
New-Item -ItemType Directory $dir | Out-Null
$server = $null
$single = $null
try {
    # The data: an ext4 file system holding real files, the rest free space, as a qcow2.
    $raw = Join-Path $dir 'fs.raw'
    & mke2fs -q -t ext4 -d $Data $raw $DiskSize
    if ($LASTEXITCODE) { throw 'mke2fs failed' }
    $image = Join-Path $dir 'bench.qcow2'
    & qemu-img convert -f raw -O qcow2 $raw $image
    Remove-Item $raw
    $socket = Join-Path $dir 'q.sock'
    $server = Start-Process qemu-nbd -ArgumentList '-r', '-t', '-e', '0', '-A', '-f', 'qcow2', '-k', $socket, $image -PassThru
    Wait-UnixSocketListening -Socket $socket -Process $server -Tool 'qemu-nbd'  # listening, not just bound
    $uri = "nbd+unix:///?socket=$socket"
    $socket1 = Join-Path $dir 'q1.sock'
    $single = Start-Process qemu-nbd -ArgumentList '-r', '-t', '-e', '1', '-A', '-f', 'qcow2', '-k', $socket1, $image -PassThru
    Wait-UnixSocketListening -Socket $socket1 -Process $single -Tool 'qemu-nbd -e 1'
    $uri1 = "nbd+unix:///?socket=$socket1"
    $dataMiB = [math]::Round(((& qemu-img map --output=json $image | Out-String | ConvertFrom-Json) | Where-Object data | Measure-Object length -Sum).Sum / 1MB, 1)

    $times = @{ qcowps = @(); qcowps1 = @(); nbdcopy = @(); qemuimg = @() }
    for ($run = 1; $run -le $Runs; $run++) {
        foreach ($tool in 'qemuimg', 'nbdcopy', 'qcowps', 'qcowps1') {
            $out = Join-Path $dir "$tool.raw"
            Remove-Item $out -ErrorAction SilentlyContinue
            $watch = [Diagnostics.Stopwatch]::StartNew()
            switch ($tool) {
                'qcowps' { Convert-QcowImage $uri -Destination $out | Out-Null }
                'qcowps1' { Convert-QcowImage $uri1 -Destination $out | Out-Null }
                'nbdcopy' { & nbdcopy $uri $out; if ($LASTEXITCODE) { throw 'nbdcopy failed' } }
                'qemuimg' { & qemu-img convert -f raw -O raw $uri $out; if ($LASTEXITCODE) { throw 'qemu-img failed' } }
            }
            $times[$tool] += $watch.Elapsed.TotalSeconds
            if ($run -eq 1) {
                & qemu-img compare -f qcow2 -F raw $image $out | Out-Null
                if ($LASTEXITCODE) { throw "$tool's output differs from the image" }
            }
            Remove-Item $out
        }
    }
    function Median($values) { $s = @($values | Sort-Object); $s[[int][math]::Floor(($s.Count - 1) / 2)] }
    $q = Median $times.qcowps; $q1 = Median $times.qcowps1; $n = Median $times.nbdcopy; $i = Median $times.qemuimg
    [pscustomobject]@{
        DataMiB = $dataMiB; DiskSize = $DiskSize; Runs = $Runs
        QcowPS = [math]::Round($q, 3); QcowPSOneConnection = [math]::Round($q1, 3); Nbdcopy = [math]::Round($n, 3); QemuImg = [math]::Round($i, 3)
        'QcowPS/nbdcopy' = [math]::Round($q / $n, 2); 'QcowPS/qemu-img' = [math]::Round($q / $i, 2)
        'QcowPS/one connection' = [math]::Round($q / $q1, 2)
    }
}
finally {
    foreach ($s in $server, $single) { if ($s -and -not $s.HasExited) { $s.Kill(); $s.WaitForExit(10000) | Out-Null } }
    Remove-Item -Recurse -Force $dir -ErrorAction SilentlyContinue
}
