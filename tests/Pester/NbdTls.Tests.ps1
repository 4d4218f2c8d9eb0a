#Requires -Version 7.0
<#
    Pester 5 tests of NBD over TLS through the cmdlets (the engine tests cover the protocol): Get-QcowInfo,
    Read-QcowBlock -OutFile and Convert-QcowImage on an nbds+unix:// URI of nbdkit --tls=require with
    tls-certificates=, checked against the served file with qemu-img compare; a wrong CA is an error
    record with a stable id and leaves no destination. Certificates are made with openssl at test time.
    Every server is stopped, pass or fail. Without the tools the tests are skipped, except on CI.
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = Test-SkipWithoutQemu
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-QcowPSModule | Out-Null
    $ProgressPreference = 'SilentlyContinue'
}

Describe 'NBD over TLS through the cmdlets' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        $certificates = New-NbdTestCertificates -Folder (Join-Path $dir 'certs')
        $source = New-QemuImage -Path (Join-Path $dir 'served.raw') -Size 24M -Format raw -Write 'write -P 0x71 1M 3M', 'write -P 0x72 20M 64k'
        $peer = Start-NbdPeer -Tool nbdkit -Folder $dir -SocketArgument '-U' -Tls -Query "tls-certificates=$($certificates.Client)" `
            -Arguments '-f', '-r', '--tls=require', "--tls-certificates=$($certificates.Server)", 'file', $source
        $wrong = $peer.Uri -replace 'tls-certificates=[^&]*', "tls-certificates=$($certificates.WrongCa)"
    }
    AfterAll {
        Stop-NbdPeer $peer
        Remove-QcowTestFolder $dir
    }

    It 'Get-QcowInfo, Read-QcowBlock -OutFile and Convert-QcowImage read the export as the served file' {
        $info = Get-QcowInfo $peer.Uri -ErrorAction Stop
        $info.Format | Should -Be 'Nbd'
        $info.VirtualSize | Should -Be 24MB
        $out = Join-Path $dir 'out.raw'
        Read-QcowBlock $peer.Uri -OutFile $out -ErrorAction Stop
        Assert-QemuIdentical -A $source -B $out -FormatA raw -FormatB raw
        $converted = Join-Path $dir 'converted.qcow2'
        Convert-QcowImage $peer.Uri -Destination $converted -ErrorAction Stop | Out-Null
        Assert-QemuIdentical -A $source -B $converted -FormatA raw -FormatB qcow2
    }

    It 'a wrong CA: an error record QcowPS.NbdRefused naming the CA file, and no destination' {
        Get-QcowInfo $wrong -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.NbdRefused*'
        "$($err[0])" | Should -BeLike "*$($certificates.WrongCa)*ca-cert.pem*"

        $out = Join-Path $dir 'wrong.raw'
        Read-QcowBlock $wrong -OutFile $out -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.NbdRefused*'
        Test-Path -LiteralPath $out | Should -BeFalse

        $converted = Join-Path $dir 'wrong.qcow2'
        Convert-QcowImage $wrong -Destination $converted -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.NbdRefused*'
        Test-Path -LiteralPath $converted | Should -BeFalse
        @(Get-ChildItem -LiteralPath $dir -Filter 'wrong*').Count | Should -Be 0 -Because 'no temporary file is left either'
    }
}
