#Requires -Version 7.0
<#
    Pester 5 tests of several NBD connections: Convert-QcowImage (from and into an export) and
    Read-QcowBlock -OutFile open up to four connections when the server sets CAN_MULTI_CONN, exactly one
    when it does not, and go on with one when the server refuses the others. nbdkit's log filter counts
    the connections the server saw; qemu-img compare checks the bytes. Every server is stopped, pass or fail.
    Without the tools the tests are skipped, except on CI ($env:CI -eq 'true'), where they fail.
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = Test-SkipWithoutQemu
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-QcowPSModule | Out-Null
    $ProgressPreference = 'SilentlyContinue'

    function Get-ConnectionCount([string]$Log) {
        <# How many connections nbdkit's log filter has logged so far (one 'connection=N Connect' line each). #>
        if (-not (Test-Path -LiteralPath $Log)) { return 0 }
        @(Select-String -LiteralPath $Log -Pattern ' connection=\d+ Connect ').Count
    }
}

Describe 'Several connections to an export that allows multi-conn' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        if (-not (Get-Command nbdkit -CommandType Application -ErrorAction Ignore)) { throw 'nbdkit is missing (apt-get install nbdkit; .ci/run does)' }
        $dir = New-QcowTestFolder
        # 24 MiB of data in runs (so a copy has many 1 MiB requests to spread), the rest holes.
        $source = New-QemuImage -Path (Join-Path $dir 'source.raw') -Size 40M -Format raw -Write 'write -P 0x61 0 9M', 'write -P 0x62 12M 15M', 'write -P 0x63 39M 100k'
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'nbdkit memory (CAN_MULTI_CONN): Convert into and out of it and Read-QcowBlock -OutFile use several connections, same bytes' {
        $log = Join-Path $dir 'multi.log'
        $peer = Start-NbdPeer -Tool nbdkit -Folder $dir -SocketArgument '-U' -Arguments '-f', '--filter=log', 'memory', '40M', "logfile=$log"
        try {
            (Get-QcowInfo $peer.Uri).NbdFlags | Should -Contain 'CAN_MULTI_CONN'
            $before = Get-ConnectionCount $log
            Convert-QcowImage $source -Destination $peer.Uri | Out-Null
            $into = (Get-ConnectionCount $log) - $before
            $into | Should -BeGreaterThan 1 -Because 'the destination export allows multi-conn'
            $into | Should -BeLessOrEqual 4

            $before = Get-ConnectionCount $log
            $back = Join-Path $dir 'back.raw'
            Convert-QcowImage $peer.Uri -Destination $back | Out-Null
            $from = (Get-ConnectionCount $log) - $before
            $from | Should -BeGreaterThan 1
            $from | Should -BeLessOrEqual 4
            Assert-QemuIdentical -A $source -B $back -FormatA raw -FormatB raw

            $before = Get-ConnectionCount $log
            $out = Join-Path $dir 'out.raw'
            Read-QcowBlock $peer.Uri -OutFile $out
            ((Get-ConnectionCount $log) - $before) | Should -BeGreaterThan 1
            Assert-QemuIdentical -A $source -B $out -FormatA raw -FormatB raw

            $before = Get-ConnectionCount $log
            (Read-QcowBlock $peer.Uri -Offset 12MB -Length 4 -Raw) -join ',' | Should -Be '98,98,98,98'
            ((Get-ConnectionCount $log) - $before) | Should -Be 1 -Because 'a small read is no copy: one connection'
        } finally { Stop-NbdPeer $peer }
    }

    It 'an export without CAN_MULTI_CONN: exactly one connection, same bytes' {
        $log = Join-Path $dir 'single.log'
        $peer = Start-NbdPeer -Tool nbdkit -Folder $dir -SocketArgument '-U' -Arguments '-f', '--filter=log', '--filter=multi-conn', 'memory', '40M', "logfile=$log", 'multi-conn-mode=disable'
        try {
            (Get-QcowInfo $peer.Uri).NbdFlags | Should -Not -Contain 'CAN_MULTI_CONN'
            $before = Get-ConnectionCount $log
            Convert-QcowImage $source -Destination $peer.Uri | Out-Null
            ((Get-ConnectionCount $log) - $before) | Should -Be 1
            $before = Get-ConnectionCount $log
            $back = Join-Path $dir 'single.raw'
            Convert-QcowImage $peer.Uri -Destination $back | Out-Null
            ((Get-ConnectionCount $log) - $before) | Should -Be 1
            Assert-QemuIdentical -A $source -B $back -FormatA raw -FormatB raw
        } finally { Stop-NbdPeer $peer }
    }

    It 'a server that refuses extra connections (nbdkit --filter=limit limit=1): the copy goes on over one' {
        # One command per server: nbdkit frees a connection's slot a moment after it closes, so a second
        # command could find the first one's slot still taken.
        $target = Join-Path $dir 'limited.img'
        [IO.File]::WriteAllBytes($target, (New-Object byte[] 40MB))
        $peer = Start-NbdPeer -Tool nbdkit -Folder $dir -SocketArgument '-U' -Arguments '-f', '--filter=limit', 'file', $target, 'limit=1'
        try { Convert-QcowImage $source -Destination $peer.Uri -ErrorAction Stop | Out-Null } finally { Stop-NbdPeer $peer }
        Assert-QemuIdentical -A $source -B $target -FormatA raw -FormatB raw
        $peer = Start-NbdPeer -Tool nbdkit -Folder $dir -SocketArgument '-U' -Arguments '-f', '--filter=limit', 'file', $target, 'limit=1'
        $back = Join-Path $dir 'limited.raw'
        try { Convert-QcowImage $peer.Uri -Destination $back -ErrorAction Stop | Out-Null } finally { Stop-NbdPeer $peer }
        Assert-QemuIdentical -A $source -B $back -FormatA raw -FormatB raw
    }
}
