#Requires -Version 7.0
<#
    Pester 5 tests of how every cmdlet finds its files: -LiteralPath, [ ] in names, provider-relative paths.
    Images are made at run time in a temporary folder; QEMU's tools are the referee (TestHelpers.psm1).
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

Describe 'Paths: -LiteralPath, [ ] in names, provider-relative paths' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
        $elsewhere = New-QcowTestFolder -Prefix 'qcowps-pester-cwd'
        # 'vm[1].qcow2' is 1 MiB; 'vm1.qcow2', which the wildcard 'vm[1].qcow2' matches, is 2 MiB.
        $bracket = New-QemuImage -Path (Join-Path $dir 'vm[1].qcow2') -Size 1M -Write 'write -P 0x5a 0 4k'
        Invoke-QemuImg 'snapshot', '-c', 'bracket-snap', $bracket | Out-Null
        New-QemuImage -Path (Join-Path $dir 'vm1.qcow2') -Size 2M | Out-Null

        # disk.qcow2 in $PWD (3 MiB, 0xaa) and a decoy of the same name in the process's current directory (5 MiB, 0xbb).
        $disk = New-QemuImage -Path (Join-Path $dir 'disk.qcow2') -Size 3M -Write 'write -P 0xaa 0 64k'
        Invoke-QemuImg 'snapshot', '-c', 'in-pwd', $disk | Out-Null
        $decoy = New-QemuImage -Path (Join-Path $elsewhere 'disk.qcow2') -Size 5M -Write 'write -P 0xbb 0 64k'
        Invoke-QemuImg 'snapshot', '-c', 'in-process-dir', $decoy | Out-Null
        New-Item -ItemType Directory -Path (Join-Path $dir 'sub') | Out-Null

        function Invoke-InPwd([scriptblock]$Script, [string]$Location = $dir) {
            $saved = [Environment]::CurrentDirectory
            [Environment]::CurrentDirectory = $elsewhere
            Push-Location -LiteralPath $Location
            try { & $Script } finally { Pop-Location; [Environment]::CurrentDirectory = $saved }
        }
    }
    AfterAll {
        Remove-QcowTestFolder $dir
        Remove-QcowTestFolder $elsewhere
    }

    It '-LiteralPath opens a file whose name has [ and ]' {
        $info = Get-QcowInfo -LiteralPath $bracket
        $info.Path | Should -Be $bracket
        $info.VirtualSize | Should -Be 1MB
    }

    It '-Path typed on the command line is a wildcard, as with Get-Item; a Path piped from our objects is the file it names' {
        # Issue 14: -Path 'vm[1].qcow2' matches vm1.qcow2, as Get-Item -Path does; objects piped by their
        # Path property (QcowImageInfo of vm[1].qcow2) still reach vm[1].qcow2.
        $typed = @(Get-QcowInfo -Path (Join-Path $dir 'vm[1].qcow2'))
        $typed | Should -HaveCount 1
        [IO.Path]::GetFileName($typed[0].Path) | Should -Be 'vm1.qcow2'
        $piped = @([pscustomobject]@{ Path = (Join-Path $dir 'vm[1].qcow2') } | Get-QcowInfo)
        [IO.Path]::GetFileName($piped[0].Path) | Should -Be 'vm[1].qcow2'
        $piped[0].VirtualSize | Should -Be 1MB
    }

    It '-Path expands [ ] as a wildcard character class when no file has that exact name' {
        $info = @(Get-QcowInfo -Path (Join-Path $dir 'v[m]1.qcow2'))
        $info | Should -HaveCount 1
        [IO.Path]::GetFileName($info[0].Path) | Should -Be 'vm1.qcow2'
        $info[0].VirtualSize | Should -Be 2MB
    }

    It 'Get-ChildItem output for a [ ] name binds to -LiteralPath (PSPath)' {
        $info = Get-ChildItem -LiteralPath $bracket | Get-QcowInfo
        $info.Path | Should -Be $bracket
        $info.VirtualSize | Should -Be 1MB
    }

    It '<Name> -LiteralPath works with a [ ] name' -ForEach @(
        @{ Name = 'Get-QcowInfo'; Run = { param($p) Get-QcowInfo -LiteralPath $p } }
        @{ Name = 'Get-QcowSnapshot'; Run = { param($p) Get-QcowSnapshot -LiteralPath $p } }
        @{ Name = 'Read-QcowBlock'; Run = { param($p) Read-QcowBlock -LiteralPath $p -Offset 0 -Length 4096 } }
        @{ Name = 'Get-QcowCluster'; Run = { param($p) Get-QcowCluster -LiteralPath $p -Allocated } }
        @{ Name = 'Get-QcowTable'; Run = { param($p) Get-QcowTable -LiteralPath $p -Table L1 -NonZero } }
    ) {
        $out = @(& $Run $bracket)
        $out.Count | Should -BeGreaterThan 0
        $out | ForEach-Object { $_.Path | Should -Be $bracket }
    }

    It 'Read-QcowBlock -LiteralPath -Raw reads the [ ] file''s data' {
        $bytes = Read-QcowBlock -LiteralPath $bracket -Offset 0 -Length 4096 -Raw
        Get-BytesHash $bytes | Should -Be (Get-BytesHash (New-FilledBytes 4096 0x5a))
    }

    It '<Name> resolves a relative path against $PWD, not the process directory' -ForEach @(
        @{ Name = 'Get-QcowInfo'; Run = { Get-QcowInfo disk.qcow2 }; Check = { param($o, $d) $o.VirtualSize | Should -Be 3MB } }
        @{ Name = 'Get-QcowSnapshot'; Run = { Get-QcowSnapshot disk.qcow2 }; Check = { param($o, $d) $o.Name | Should -Be 'in-pwd' } }
        @{ Name = 'Read-QcowBlock'; Run = { Read-QcowBlock disk.qcow2 0 16 }; Check = { param($o, $d) $o.Data[0] | Should -Be 0xaa } }
        @{ Name = 'Get-QcowCluster'; Run = { Get-QcowCluster disk.qcow2 -Allocated }; Check = { param($o, $d) $o.Length | Should -Be 65536 } }
        @{ Name = 'Get-QcowTable'; Run = { Get-QcowTable disk.qcow2 L1 -NonZero }; Check = { param($o, $d) $o.Index | Should -Be 0 } }
    ) {
        $out = @(Invoke-InPwd $Run)
        $out | Should -HaveCount 1
        $out[0].Path | Should -Be (Join-Path $dir 'disk.qcow2')
        & $Check $out[0] $dir
    }

    It 'resolves ..\ and ./ paths against $PWD' {
        $info = @(Invoke-InPwd { Get-QcowInfo ../disk.qcow2, ./../vm1.qcow2 } -Location (Join-Path $dir 'sub'))
        $info.Path | Should -Be @((Join-Path $dir 'disk.qcow2'), (Join-Path $dir 'vm1.qcow2'))
    }

    It 'resolves a PSDrive path' {
        New-PSDrive -Name QcowTest -PSProvider FileSystem -Root $dir -Scope Global | Out-Null
        try {
            (Get-QcowInfo 'QcowTest:/disk.qcow2').Path | Should -Be (Join-Path $dir 'disk.qcow2')
            (Get-QcowInfo -LiteralPath 'QcowTest:/vm[1].qcow2').Path | Should -Be $bracket
        } finally {
            Remove-PSDrive -Name QcowTest -Scope Global
        }
    }

    It 'Read-QcowBlock -OutFile writes a relative file under $PWD' {
        Invoke-InPwd { Read-QcowBlock disk.qcow2 -Offset 0 -Length 64K -OutFile 'first-cluster.bin' }
        Test-Path -LiteralPath (Join-Path $elsewhere 'first-cluster.bin') | Should -BeFalse
        $written = Join-Path $dir 'first-cluster.bin'
        (Get-Item -LiteralPath $written).Length | Should -Be 65536
        Get-BytesHash (Get-FileBytes $written) | Should -Be (Get-BytesHash (New-FilledBytes 65536 0xaa))
    }

    It 'a QcowImageInfo of a [ ] file piped to Get-QcowSnapshot finds the same file' {
        # The object's path binds to -LiteralPath (PSPath): bound to -Path, [1] would be a wildcard.
        $snap = @(Get-QcowInfo -LiteralPath $bracket | Get-QcowSnapshot)
        $snap.Name | Should -Be 'bracket-snap'
    }
}
