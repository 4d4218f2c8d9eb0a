#Requires -Version 7.0
<#
    Pester 5 tests of NBD URIs as image arguments: Get-QcowInfo, Read-QcowBlock, Write-QcowBlock,
    Get-QcowCluster -Extent, Convert-QcowImage (from and into an export) and Compare-QcowImage, with
    qemu-nbd and nbdkit serving on Unix sockets in the test's temporary folder. Every server the tests
    start is stopped in AfterAll, pass or fail. qemu-img gives the expected answers.
    Without the tools the tests are skipped, except on CI ($env:CI -eq 'true'), where they fail.
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = Test-SkipWithoutQemu
    # Without qemu-nbd or nbdkit the tests are skipped, except on CI, where Start-NbdPeer then fails them.
    $peerCount = @(Get-Command qemu-nbd, nbdkit -CommandType Application -ErrorAction SilentlyContinue | Select-Object -ExpandProperty Name -Unique).Count
    $SkipNbd = $SkipImages -or ($peerCount -lt 2 -and $env:CI -ne 'true')
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $QcowModule = Import-QcowPSModule
    $ProgressPreference = 'SilentlyContinue'
}

Describe 'NBD URIs as image arguments' -Skip:$SkipNbd {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        $image = Join-Path $dir 'served.qcow2'
        New-QemuImage -Path $image -Size 32M | Out-Null
        Invoke-QemuIo $image 'write -P 0x41 1M 2M', 'write -P 0x42 20M 64k', 'write -z 24M 1M' | Out-Null
        $peers = [Collections.Generic.List[object]]::new()
        $served = Start-NbdPeer -Tool qemu-nbd -Folder $dir -SocketArgument '-k' -Arguments '-r', '-t', '-e', '0', '-A', '-f', 'qcow2', $image
        $peers.Add($served)
        $memory = Start-NbdPeer -Tool nbdkit -Folder $dir -SocketArgument '-U' -Arguments '-f', 'memory', '32M'
        $peers.Add($memory)
        $failing = Start-NbdPeer -Tool nbdkit -Folder $dir -SocketArgument '-U' -Arguments '-f', '--filter=error', 'memory', '8M', 'error-pread=EIO', 'error-pread-rate=100%'
        $peers.Add($failing)
        $expected = Export-QemuRaw -Path $image -Destination (Join-Path $dir 'expected.raw')
    }
    AfterAll {
        foreach ($p in $peers) { Stop-NbdPeer $p }
        Remove-QcowTestFolder $dir
    }

    It 'Get-QcowInfo describes the export: Nbd, the size qemu-img info gives, read-only, its contexts' {
        $info = Get-QcowInfo $served.Uri
        $info.Format | Should -Be 'Nbd'
        $info.VirtualSize | Should -Be (Get-QemuImageInfo $image).'virtual-size'
        $info.ReadOnly | Should -BeTrue
        $info.NbdFlags | Should -Contain 'READ_ONLY'
        $info.MetaContexts | Should -Contain 'base:allocation'
        $info.MetaContexts | Should -Contain 'qemu:allocation-depth'
        $info.BlockSizeMaximum | Should -BeGreaterThan 0
        (Get-QcowInfo -LiteralPath $served.Uri).VirtualSize | Should -Be $info.VirtualSize
        ($served.Uri | Get-QcowInfo).Path | Should -Be $served.Uri
        (Get-QcowInfo $memory.Uri).ReadOnly | Should -BeFalse
    }

    It 'Read-QcowBlock -OutFile writes what qemu-img convert writes, and -Raw returns the bytes' {
        $out = Join-Path $dir 'read.raw'
        Read-QcowBlock $served.Uri -OutFile $out
        Invoke-QemuImg 'compare', '-f', 'raw', '-F', 'raw', $expected, $out | Out-Null
        $bytes = Read-QcowBlock $served.Uri -Offset 1MB -Length 4 -Raw
        $bytes | Should -Be @(0x41, 0x41, 0x41, 0x41)
        $block = @(Read-QcowBlock $served.Uri -Offset 20MB -Length 4096)[0]
        $block.ClusterType | Should -Be 'Normal'
        $block.HostOffset | Should -BeNullOrEmpty
    }

    It 'Get-QcowCluster -Extent gives the data runs qemu-img map gives' {
        $ours = @(Get-QcowCluster -Extent $served.Uri | Where-Object { $_.ClusterType -in 'Normal', 'Compressed' } | ForEach-Object { "$($_.VirtualOffset)+$($_.Length)" })
        $theirs = @(Get-QemuMap $image | Where-Object { $_.data } | ForEach-Object { "$($_.start)+$($_.length)" })
        $ours | Should -Be $theirs
        @(Get-QcowCluster -Extent $served.Uri | Where-Object ClusterType -eq 'Zero').Count | Should -Be 1
    }

    It 'Convert-QcowImage from an export makes a qcow2 qemu-img finds identical and clean' {
        $out = Join-Path $dir 'converted.qcow2'
        $result = Convert-QcowImage $served.Uri -Destination $out -Compress
        $result.Destination | Should -Be $out
        Invoke-QemuImg 'compare', $image, $out | Out-Null
        $check = Get-QemuCheck $out
        $check.Corruptions | Should -Be 0
        $check.Leaks | Should -Be 0
    }

    It 'Convert-QcowImage into an existing export writes it in place (like qemu-img convert -n)' {
        Convert-QcowImage $image -Destination $memory.Uri -WhatIf
        $bytes = Read-QcowBlock $memory.Uri -Offset 1MB -Length 1 -Raw
        $bytes | Should -Be 0
        $result = Convert-QcowImage $image -Destination $memory.Uri
        $result.DestinationFormat | Should -Be 'Nbd'
        Compare-QcowImage $image $memory.Uri -Quiet | Should -BeTrue
        Compare-QcowImage $memory.Uri $expected -Format Raw -DifferenceFormat Raw -Quiet | Should -BeTrue
        { Convert-QcowImage $image -Destination $memory.Uri -Compress -ErrorAction Stop } |
            Should -Throw -ErrorId 'QcowPS.ConflictingParameters,QcowPS.Cmdlets.ConvertQcowImageCommand'
    }

    It 'Write-QcowBlock writes -Data and -Zero into a writable export, and -WhatIf writes nothing' {
        Write-QcowBlock $memory.Uri -Offset 30MB -Data ([byte[]](1, 2, 3)) -WhatIf
        $bytes = Read-QcowBlock $memory.Uri -Offset 30MB -Length 3 -Raw
        $bytes | Should -Be @(0, 0, 0)
        Write-QcowBlock $memory.Uri -Offset 30MB -Data ([byte[]](1, 2, 3))
        $bytes = Read-QcowBlock $memory.Uri -Offset 30MB -Length 3 -Raw
        $bytes | Should -Be @(1, 2, 3)
        Write-QcowBlock $memory.Uri -Offset 30MB -Zero -Length 2
        $bytes = Read-QcowBlock $memory.Uri -Offset 30MB -Length 3 -Raw
        $bytes | Should -Be @(0, 0, 3)
    }

    It 'writing to a read-only export is QcowPS.ImageReadOnly, naming the URI' {
        { Write-QcowBlock $served.Uri -Offset 0 -Data ([byte[]](1)) -ErrorAction Stop } |
            Should -Throw -ErrorId 'QcowPS.ImageReadOnly,QcowPS.Cmdlets.WriteQcowBlockCommand'
    }

    It 'a server error fails the cmdlet with QcowPS.NbdServerError naming EIO, and leaves no -OutFile' {
        Write-QcowBlock $failing.Uri -Offset 4MB -Data ([byte[]](9, 9))
        $out = Join-Path $dir 'failed.raw'
        $err = $null
        Read-QcowBlock $failing.Uri -OutFile $out -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -Be 'QcowPS.NbdServerError,QcowPS.Cmdlets.ReadQcowBlockCommand'
        $err[0].Exception.Message | Should -Match 'EIO'
        $err[0].TargetObject | Should -Be $failing.Uri
        Test-Path -LiteralPath $out | Should -BeFalse
    }

    It 'a bad URI is QcowPS.InvalidNbdUri, and a missing server QcowPS.NbdConnectionFailed, both naming the URI' {
        $err = $null
        Get-QcowInfo 'nbd+unix:///disk' -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be 'QcowPS.InvalidNbdUri,QcowPS.Cmdlets.GetQcowInfoCommand'
        $err[0].Exception.Message | Should -Match 'socket='
        $missing = "nbd+unix:///?socket=$dir/nothing.sock"
        Get-QcowInfo $missing -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be 'QcowPS.NbdConnectionFailed,QcowPS.Cmdlets.GetQcowInfoCommand'
        $err[0].TargetObject | Should -Be $missing
    }

    It 'a URI is refused where a new file is named' {
        { New-QcowImage $memory.Uri -Size 1MB -ErrorAction Stop } | Should -Throw -ErrorId 'QcowPS.NbdUriNotAFile,QcowPS.Cmdlets.NewQcowImageCommand'
    }
}
