#Requires -Version 7.0
<#
    Start-/Get-/Stop-QcowNbdServer (issue 10) against real NBD peers: qemu-img and qemu-io on nbd:// URIs,
    libnbd's nbdinfo (the export list, socket activation, TLS), openssl for test-time certificates.
    Every server a test starts is stopped in AfterEach; socket-activated ones end with their nbdinfo.
    The Linux kernel's NBD client is not tested: there is no nbd kernel module here.
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $NbdTools = 'qemu-img', 'qemu-io', 'nbdinfo', 'openssl'
    $missing = @($NbdTools | Where-Object { -not (Get-Command -Name $_ -CommandType Application -ErrorAction Ignore) })
    $SkipNbd = $missing.Count -gt 0 -and $env:CI -ne 'true'
    if ($SkipNbd) { Write-Warning "Skipping the NBD server tests: $($missing -join ', ') not on PATH (.ci/run installs qemu-utils, libnbd-bin, openssl)." }
    Import-QcowPSModule | Out-Null
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-QcowPSModule | Out-Null
    $script:NbdTools = 'qemu-img', 'qemu-io', 'nbdinfo', 'openssl'

    # A native command with a time limit (no test may hang): ExitCode and Output (stdout and stderr).
    function script:Invoke-Bounded([string]$Tool, [string[]]$ArgumentList, [int]$Seconds = 120) {
        $start = [System.Diagnostics.ProcessStartInfo]::new('timeout')
        foreach ($a in @('-k', '5', "$Seconds", $Tool) + $ArgumentList) { $start.ArgumentList.Add($a) }
        $start.WorkingDirectory = (Resolve-Path (Join-Path $PSScriptRoot '../..')).ProviderPath
        $start.RedirectStandardOutput = $true
        $start.RedirectStandardError = $true
        $start.UseShellExecute = $false
        $process = [System.Diagnostics.Process]::Start($start)
        try {
            $stderr = $process.StandardError.ReadToEndAsync()
            $stdout = $process.StandardOutput.ReadToEnd()
            $process.WaitForExit()
            [pscustomobject]@{ ExitCode = $process.ExitCode; Output = "$stdout`n$($stderr.GetAwaiter().GetResult())".Trim() }
        } finally {
            $process.Dispose()
        }
    }

    function script:Compare-Export([string]$Image, [string]$Uri, [string]$Format = 'qcow2') {
        Invoke-Bounded 'qemu-img' @('compare', '-f', $Format, $Image, $Uri)
    }
}

Describe 'Start-QcowNbdServer' -Skip:$SkipNbd {
    BeforeEach {
        $dir = New-QcowTestFolder -Prefix 'qcowps-nbd'
        $base = New-QemuImage -Path (Join-Path $dir 'base.qcow2') -Size 64M -Write 'write -P 0x11 0 1M', 'write -P 0x22 8M 64k'
        $overlay = New-QemuImage -Path (Join-Path $dir 'vm.qcow2') -Size 64M -BackingFile $base -BackingFormat qcow2 -Write 'write -P 0x33 512k 1M', 'write -z 8M 4k'
    }
    AfterEach {
        Get-QcowNbdServer | Stop-QcowNbdServer
        Remove-QcowTestFolder $dir
    }

    It 'the NBD peers are on PATH' {
        $missing = @($script:NbdTools | Where-Object { -not (Get-Command -Name $_ -CommandType Application -ErrorAction Ignore) })
        $missing | Should -BeNullOrEmpty -Because 'CI=true: the NBD tests must run, not skip (.ci/run installs them)'
    }

    It 'serves a backing chain read-only on a Unix socket; qemu-img compare finds the export identical to the file' {
        $sock = Join-Path $dir 'vm.sock'
        $server = Start-QcowNbdServer -LiteralPath $overlay -ReadOnly -Socket $sock -ErrorAction Stop
        $server.Uri | Should -Be "nbd+unix:///?socket=$sock"
        $server.ReadOnly | Should -BeTrue
        "$($server.State)" | Should -Be 'Running'
        $server.Exports | Should -Be @('')
        $run = Compare-Export $overlay $server.Uri
        $run.ExitCode | Should -Be 0 -Because $run.Output
        $run.Output | Should -Match 'identical'
        (Get-QcowNbdServer -Id $server.Id).BytesRead | Should -BeGreaterThan 0
    }

    It 'compare catches a difference (the oracle is not blind)' {
        $server = Start-QcowNbdServer -LiteralPath $overlay -ReadOnly -Socket (Join-Path $dir 'vm.sock') -ErrorAction Stop
        (Compare-Export $base $server.Uri).ExitCode | Should -Be 1
    }

    It 'listens on loopback TCP with -Port 0 and says which port in Uri' {
        $server = Start-QcowNbdServer -LiteralPath $overlay -ReadOnly -Port 0 -ExportName 'disk' -ErrorAction Stop
        $server.Port | Should -BeGreaterThan 0
        $server.Address | Should -Be '127.0.0.1'
        $server.Uri | Should -Be "nbd://127.0.0.1:$($server.Port)/disk"
        (Compare-Export $overlay $server.Uri).ExitCode | Should -Be 0
    }

    It 'lists one export per -Path, named after the files (nbdinfo --list)' {
        $other = New-QemuImage -Path (Join-Path $dir 'data.qcow2') -Size 2M -Write 'write -P 0x44 0 64k'
        $server = Start-QcowNbdServer -LiteralPath $overlay, $other -ReadOnly -Socket (Join-Path $dir 'multi.sock') -ErrorAction Stop
        @($server.Exports | Sort-Object) | Should -Be @('data.qcow2', 'vm.qcow2')
        $run = Invoke-Bounded 'nbdinfo' @('--list', '--json', $server.Uri)
        $run.ExitCode | Should -Be 0 -Because $run.Output
        $listed = ($run.Output | ConvertFrom-Json).exports
        @($listed.'export-name' | Sort-Object) | Should -Be @('data.qcow2', 'vm.qcow2')
        ($listed | Where-Object 'export-name' -eq 'data.qcow2').'export-size' | Should -Be 2MB
        $uri = "nbd+unix:///data.qcow2?socket=$(Join-Path $dir 'multi.sock')"
        (Compare-Export $other $uri).ExitCode | Should -Be 0
    }

    It 'exports an internal snapshot read-only, reading as qemu-img convert -l does' {
        Invoke-QemuImg 'snapshot', '-c', 'before', $overlay | Out-Null
        Invoke-QemuIo $overlay 'write -P 0x99 0 2M'
        $snapRaw = Export-QemuRaw -Path $overlay -Destination (Join-Path $dir 'before.raw') -SnapshotName 'before'
        $server = Start-QcowNbdServer -LiteralPath $overlay -Snapshot 'before' -Socket (Join-Path $dir 'snap.sock') -ErrorAction Stop
        $server.ReadOnly | Should -BeTrue -Because 'a snapshot export is always read-only'
        (Compare-Export $snapRaw $server.Uri 'raw').ExitCode | Should -Be 0
        (Compare-Export $overlay $server.Uri).ExitCode | Should -Be 1 -Because 'the current data differs from the snapshot'
    }

    It 'refuses writes on a read-only export and leaves the image unchanged' {
        $before = (Get-FileHash -LiteralPath $overlay).Hash
        $server = Start-QcowNbdServer -LiteralPath $overlay -ReadOnly -Socket (Join-Path $dir 'ro.sock') -ErrorAction Stop
        $run = Invoke-Bounded 'qemu-io' @('-f', 'raw', '-c', 'write -P 0x77 0 4k', $server.Uri)
        $run.Output | Should -Match 'Permission denied|read-only|Operation not permitted'
        $server | Stop-QcowNbdServer
        (Get-FileHash -LiteralPath $overlay).Hash | Should -Be $before
    }

    It 'takes qemu-io writes, zeroes, discards and flushes on a writable export; the image checks clean after Stop' {
        $server = Start-QcowNbdServer -LiteralPath $overlay -Socket (Join-Path $dir 'rw.sock') -ErrorAction Stop
        $server.ReadOnly | Should -BeFalse
        $run = Invoke-Bounded 'qemu-io' @('-f', 'raw', '-c', 'write -P 0x5a 4M 128k', '-c', 'write -f -P 0x5b 6M 4k',
            '-c', 'write -z 512k 64k', '-c', 'discard 0 64k', '-c', 'flush', $server.Uri)
        $run.ExitCode | Should -Be 0 -Because $run.Output
        $run.Output | Should -Not -Match 'failed'
        $server.BytesWritten | Should -BeGreaterOrEqual (128KB + 4KB)
        $server | Stop-QcowNbdServer
        "$($server.State)" | Should -Be 'Stopped'
        Get-QemuIoPatternMismatch $overlay '0x5a 4M 128k', '0x5b 6M 4k', '0x00 512k 64k', '0x00 0 64k', '0x33 576k 64k' | Should -BeNullOrEmpty
        $check = Get-QemuCheck $overlay
        $check.ExitCode | Should -Be 0 -Because ($check.Messages -join "`n")
    }

    It 'holds QEMU''s write lock while serving; Stop releases it' {
        $server = Start-QcowNbdServer -LiteralPath $overlay -Socket (Join-Path $dir 'lock.sock') -ErrorAction Stop
        $held = Invoke-Bounded 'qemu-io' @('-f', 'qcow2', '-c', 'write -P 0x66 0 4k', $overlay)
        $held.Output | Should -Match 'lock'
        $sw = [Diagnostics.Stopwatch]::StartNew()
        Stop-QcowNbdServer -InputObject $server
        $sw.Elapsed.TotalSeconds | Should -BeLessThan 10 -Because 'a stop with no clients is prompt (a bound, not a speed claim)'
        Test-Path -LiteralPath (Join-Path $dir 'lock.sock') | Should -BeFalse -Because 'the socket file is removed'
        Invoke-QemuIo $overlay 'write -P 0x66 0 4k'
        Get-QemuIoPatternMismatch $overlay '0x66 0 4k' | Should -BeNullOrEmpty
    }

    It '-WhatIf opens nothing and makes no socket' {
        $before = @(Get-QcowNbdServer).Count
        Start-QcowNbdServer -LiteralPath $overlay -Socket (Join-Path $dir 'whatif.sock') -WhatIf | Should -BeNullOrEmpty
        Test-Path -LiteralPath (Join-Path $dir 'whatif.sock') | Should -BeFalse
        @(Get-QcowNbdServer).Count | Should -Be $before
        Invoke-QemuIo $overlay 'write -P 0x12 0 4k'   # not locked
    }

    It 'Get-QcowNbdServer and Stop-QcowNbdServer work by Id and from the pipeline' {
        $a = Start-QcowNbdServer -LiteralPath $overlay -ReadOnly -Socket (Join-Path $dir 'a.sock') -ErrorAction Stop
        $b = Start-QcowNbdServer -LiteralPath $base -ReadOnly -Port 0 -ErrorAction Stop
        $a.Id | Should -Not -Be $b.Id
        (Get-QcowNbdServer -Id $b.Id).Uri | Should -Be $b.Uri
        @(Get-QcowNbdServer).Id | Should -Contain $a.Id
        [pscustomobject]@{ Id = $a.Id } | Stop-QcowNbdServer
        "$($a.State)" | Should -Be 'Stopped'
        @(Get-QcowNbdServer).Id | Should -Not -Contain $a.Id
        Stop-QcowNbdServer -Id $b.Id -WhatIf
        "$($b.State)" | Should -Be 'Running'
        Get-QcowNbdServer -Id $b.Id | Stop-QcowNbdServer
        "$($b.State)" | Should -Be 'Stopped'
        Stop-QcowNbdServer -Id 999999 -ErrorVariable errs -ErrorAction SilentlyContinue
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.NbdServerNotFound*'
    }

    It 'refuses a socket path that exists, and a second writer of the same image' {
        $taken = Join-Path $dir 'taken.sock'
        Set-Content -LiteralPath $taken -Value 'x'
        Start-QcowNbdServer -LiteralPath $overlay -Socket $taken -ErrorVariable errs -ErrorAction SilentlyContinue
        $errs[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.FileExists*'
        $first = Start-QcowNbdServer -LiteralPath $overlay -Socket (Join-Path $dir 'one.sock') -ErrorAction Stop
        Start-QcowNbdServer -LiteralPath $overlay -Socket (Join-Path $dir 'two.sock') -ErrorVariable errs2 -ErrorAction SilentlyContinue
        $errs2[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.ImageInUse*'
        $errs2[0].TargetObject | Should -Be $overlay
        @(Get-QcowNbdServer).Count | Should -Be 1
    }

    It 'refuses -Socket with -Port, and a call with neither' {
        { Start-QcowNbdServer -LiteralPath $overlay -Socket (Join-Path $dir 'x.sock') -Port 0 -ErrorAction Stop } | Should -Throw -ErrorId 'QcowPS.ConflictingParameters*'
        { Start-QcowNbdServer -LiteralPath $overlay -ErrorAction Stop } | Should -Throw -ErrorId 'QcowPS.NoListener*'
    }

    It 'shows a server in 120 columns with its Uri whole' {
        $server = Start-QcowNbdServer -LiteralPath $overlay -ReadOnly -Socket (Join-Path $dir 'view.sock') -ErrorAction Stop
        $text = $server | Format-Table | Out-String -Width 120
        $text | Should -Match 'Id\s+State\s+ReadOnly'
        $text | Should -Match ([regex]::Escape($server.Uri))
        (Get-TextLineStats $text).MaxLength | Should -BeLessOrEqual 120
    }
}

Describe 'Start-QcowNbdServer -Wait under socket activation' -Skip:$SkipNbd {
    BeforeAll {
        $dir = New-QcowTestFolder -Prefix 'qcowps-nbdact'
        $image = New-QemuImage -Path (Join-Path $dir 'act.qcow2') -Size 32M -Write 'write -P 0x42 0 1M'
        $marker = "qcowps-activation-$([Guid]::NewGuid().ToString('N').Substring(0, 8))"
    }
    AfterAll {
        # A server the test could not end: found by the marker in its command line, stopped by its id.
        Get-Process | Where-Object { try { $_.CommandLine -like "*$marker*" } catch { $false } } | ForEach-Object { Stop-Process -Id $_.Id -ErrorAction Ignore }
        Remove-QcowTestFolder $dir
    }

    It 'nbdinfo [ pwsh ... Start-QcowNbdServer -Wait ] reads the export, and the server ends with nbdinfo' {
        $module = Join-Path (Get-Module QcowPS).ModuleBase 'QcowPS.psd1'
        $script = "# $marker`nImport-Module '$module'; Start-QcowNbdServer -LiteralPath '$image' -ReadOnly -Wait | Out-Null"
        # The command as this session was started: `dotnet pwsh` (a launcher whose grandchild serves) or pwsh.
        $exe = (Get-Process -Id $PID).Path
        $command = @($exe)
        if ([IO.Path]::GetFileNameWithoutExtension($exe) -eq 'dotnet') { $command += 'pwsh' }
        $command += '-NoProfile', '-NonInteractive', '-Command', $script
        $run = Invoke-Bounded 'nbdinfo' (@('--json', '--', '[') + $command + ']') 180
        $run.ExitCode | Should -Be 0 -Because $run.Output
        $json = ($run.Output.Substring($run.Output.IndexOf('{'))) | ConvertFrom-Json
        $json.exports[0].'export-size' | Should -Be 32MB
        $json.exports[0].is_read_only | Should -BeTrue
        # The server stops by itself once its activator is gone (within a few polls).
        $deadline = [DateTime]::UtcNow.AddSeconds(20)
        do {
            Start-Sleep -Milliseconds 250
            $left = @(Get-Process | Where-Object { try { $_.CommandLine -like "*$marker*" } catch { $false } })
        } while ($left.Count -gt 0 -and [DateTime]::UtcNow -lt $deadline)
        $left.Count | Should -Be 0 -Because 'the serving process must not outlive the client that started it'
        # And it let go of the image.
        Invoke-QemuIo $image 'write -P 0x43 0 4k'
    }
}

Describe 'Start-QcowNbdServer -Certificate (TLS)' -Skip:$SkipNbd {
    BeforeAll {
        $dir = New-QcowTestFolder -Prefix 'qcowps-nbdtls'
        $image = New-QemuImage -Path (Join-Path $dir 'tls.qcow2') -Size 16M -Write 'write -P 0x24 0 1M'
        function New-Ca([string]$Folder, [string]$Name) {
            New-Item -ItemType Directory -Path $Folder -Force | Out-Null
            & openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$Name" -keyout (Join-Path $Folder 'ca-key.pem') -out (Join-Path $Folder 'ca-cert.pem') 2>&1 | Out-Null
            $LASTEXITCODE | Should -Be 0
        }
        # The right CA, which signs the server's certificate, and a stranger's CA.
        $good = Join-Path $dir 'good'
        $wrong = Join-Path $dir 'wrong'
        New-Ca $good 'QcowPS test CA'
        New-Ca $wrong 'Some other CA'
        $ext = Join-Path $dir 'ext.cnf'
        Set-Content -LiteralPath $ext -Value "subjectAltName=DNS:localhost,IP:127.0.0.1`nextendedKeyUsage=serverAuth"
        & openssl req -newkey rsa:2048 -nodes -subj '/CN=localhost' -keyout (Join-Path $dir 'server-key.pem') -out (Join-Path $dir 'server.csr') 2>&1 | Out-Null
        & openssl x509 -req -in (Join-Path $dir 'server.csr') -CA (Join-Path $good 'ca-cert.pem') -CAkey (Join-Path $good 'ca-key.pem') -CAcreateserial `
            -days 2 -extfile $ext -out (Join-Path $dir 'server-cert.pem') 2>&1 | Out-Null
        $LASTEXITCODE | Should -Be 0
        # Clients get only the CA certificate (GnuTLS x509 directory layout).
        foreach ($d in $good, $wrong) { Remove-Item -LiteralPath (Join-Path $d 'ca-key.pem') }
        $cert = [System.Security.Cryptography.X509Certificates.X509Certificate2]::CreateFromPemFile((Join-Path $dir 'server-cert.pem'), (Join-Path $dir 'server-key.pem'))
        $sock = Join-Path $dir 'tls.sock'
        $server = Start-QcowNbdServer -LiteralPath $image -ReadOnly -Socket $sock -Certificate $cert -ErrorAction Stop
        # libnbd checks the server's certificate only when it has a host name to check it against: on a
        # Unix socket it accepts any certificate. The wrong-CA test therefore goes over TCP to 'localhost'.
        $tcp = Start-QcowNbdServer -LiteralPath $image -ReadOnly -Port 0 -Certificate $cert -ErrorAction Stop
    }
    AfterAll {
        Get-QcowNbdServer | Stop-QcowNbdServer
        Remove-QcowTestFolder $dir
    }

    It 'says nbds+unix in Uri and Tls' {
        $server.Tls | Should -BeTrue
        $server.Uri | Should -BeLike 'nbds+unix:///*'
    }

    It 'a client with the right CA connects and reads the image' {
        $run = Invoke-Bounded 'nbdinfo' @('--size', "nbds+unix:///?socket=$sock&tls-certificates=$good")
        $run.ExitCode | Should -Be 0 -Because $run.Output
        $run.Output | Should -Be "$(16MB)"
        $run = Invoke-Bounded 'nbdinfo' @('--map', "nbds+unix:///?socket=$sock&tls-certificates=$good")
        $run.ExitCode | Should -Be 0 -Because $run.Output
        $run.Output | Should -Match '(?m)^\s*0\s+1048576\s+0\s+data'
    }

    It 'a plaintext client is refused' {
        $run = Invoke-Bounded 'nbdinfo' @('--size', "nbd+unix:///?socket=$sock")
        $run.ExitCode | Should -Not -Be 0
        $run.Output | Should -Match 'TLS'
    }

    It 'a client trusting another CA fails the handshake (TCP); the right CA connects' {
        $tcp.Uri | Should -Be "nbds://127.0.0.1:$($tcp.Port)/"
        $run = Invoke-Bounded 'nbdinfo' @('--size', "nbds://localhost:$($tcp.Port)/?tls-certificates=$wrong")
        $run.ExitCode | Should -Not -Be 0
        $run.Output | Should -Match 'certificate verification'
        "$($tcp.State)" | Should -Be 'Running' -Because 'a failed handshake ends that connection only'
        $run = Invoke-Bounded 'nbdinfo' @('--size', "nbds://localhost:$($tcp.Port)/?tls-certificates=$good")
        $run.ExitCode | Should -Be 0 -Because $run.Output
        $run.Output | Should -Be "$(16MB)"
    }

    It 'a plaintext client is refused on TCP too' {
        $run = Invoke-Bounded 'nbdinfo' @('--size', "nbd://localhost:$($tcp.Port)/")
        $run.ExitCode | Should -Not -Be 0
        $run.Output | Should -Match 'TLS'
    }

    It 'refuses a certificate without its private key' {
        $public = [System.Security.Cryptography.X509Certificates.X509Certificate2]::new((Join-Path $dir 'server-cert.pem'))
        { Start-QcowNbdServer -LiteralPath $image -ReadOnly -Socket (Join-Path $dir 'nokey.sock') -Certificate $public -ErrorAction Stop } |
            Should -Throw -ErrorId 'QcowPS.CertificateWithoutKey*'
    }
}
