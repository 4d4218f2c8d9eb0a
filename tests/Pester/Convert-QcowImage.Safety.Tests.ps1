#Requires -Version 7.0
<#
    Pester 5 tests of Convert-QcowImage never losing a file: existing destinations, -WhatIf, failures
    mid-way, images in use.
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

Describe 'Convert-QcowImage: never losing a file' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder -Prefix 'qcowps-pester-safety'
        $source = New-QemuImage (Join-Path $dir 'app01.qcow2') 16M -Write 'write -P 0x61 0 1M', 'write -P 0x62 12M 64k'
        $sourceHash = Get-Hash $source
    }
    AfterAll { Remove-QcowTestFolder $dir }
    AfterEach {
        Get-Hash $source | Should -Be $sourceHash
        Get-Leftovers $dir | Should -BeNullOrEmpty
    }

    It 'an existing destination is refused without -Force (QcowPS.FileExists) and left as it was' {
        $existing = New-QemuImage (New-Name $dir 'existing') 8M -Write 'write -P 0x99 0 64k'
        $before = Get-Hash $existing
        $result = Convert-QcowImage $source $existing -ErrorAction SilentlyContinue -ErrorVariable err
        $result | Should -BeNullOrEmpty
        Get-ErrorIds $err | Should -Be @('QcowPS.FileExists')
        $err[0].CategoryInfo.Category | Should -Be 'ResourceExists'
        Get-Hash $existing | Should -Be $before
    }

    It '-Force replaces an existing destination with the converted image' {
        $existing = New-QemuImage (New-Name $dir 'replaced') 8M -Write 'write -P 0x99 0 64k'
        $result = Convert-QcowImage $source $existing -Force
        $result.Destination | Should -Be $existing
        (Get-QemuImageInfo $existing).'virtual-size' | Should -Be 16MB
        Assert-QemuIdentical $source $existing
        Assert-QemuClean $existing | Out-Null
    }

    It '-WhatIf creates nothing, replaces nothing and returns nothing' {
        $new = New-Name $dir 'whatif'
        Convert-QcowImage $source $new -WhatIf | Should -BeNullOrEmpty
        $new | Should -Not -Exist
        $existing = New-QemuImage (New-Name $dir 'whatif-existing') 8M
        $before = Get-Hash $existing
        Convert-QcowImage $source $existing -Force -Compress -WhatIf | Should -BeNullOrEmpty
        Get-Hash $existing | Should -Be $before
    }

    It 'a destination that is the source is refused <Label>, and the source is not touched' -ForEach @(
        @{ Label = 'without -Force'; Force = $false; Id = 'QcowPS.FileExists' }
        @{ Label = 'even with -Force'; Force = $true; Id = 'QcowPS.InvalidArgument' }
    ) {
        $result = Convert-QcowImage $source $source -Force:$Force -ErrorAction SilentlyContinue -ErrorVariable err
        $result | Should -BeNullOrEmpty
        Get-ErrorIds $err | Should -Be @($Id)
        Assert-QemuClean $source | Out-Null
    }

    It 'a destination that is a backing file of the source is refused even with -Force' {
        $overlay = New-QemuImage (Join-Path $dir 'app01-overlay.qcow2') 16M -BackingFile 'app01.qcow2' -BackingFormat qcow2 -Write 'write -P 0x63 0 64k'
        $result = Convert-QcowImage $overlay $source -Force -ErrorAction SilentlyContinue -ErrorVariable err
        $result | Should -BeNullOrEmpty
        Get-ErrorIds $err | Should -Be @('QcowPS.InvalidArgument')
        $err[0].Exception.Message | Should -BeLike '*backing*'
    }

    It 'relative paths are resolved against $PWD, not the process''s current directory' {
        $elsewhere = New-QcowTestFolder -Prefix 'qcowps-pester-elsewhere'
        $saved = [Environment]::CurrentDirectory
        [Environment]::CurrentDirectory = $elsewhere
        Push-Location -LiteralPath $dir
        try {
            $result = Convert-QcowImage 'app01.qcow2' 'relative-copy.qcow2'
        } finally {
            Pop-Location
            [Environment]::CurrentDirectory = $saved
        }
        try {
            $result.Source | Should -Be $source
            $result.Destination | Should -Be (Join-Path $dir 'relative-copy.qcow2')
            Join-Path $dir 'relative-copy.qcow2' | Should -Exist
            @(Get-ChildItem -LiteralPath $elsewhere -Force) | Should -BeNullOrEmpty
            Assert-QemuIdentical $source $result.Destination
        } finally {
            Remove-QcowTestFolder $elsewhere
        }
    }

    It 'Get-ChildItem *.qcow2 | ForEach-Object { Convert-QcowImage ... -Compress } archives every disk of a folder' {
        $disks = New-QcowTestFolder -Prefix 'qcowps-pester-disks'
        $archive = New-QcowTestFolder -Prefix 'qcowps-pester-archive'
        try {
            $names = 'db01', 'web01', 'web02'
            $i = 0
            foreach ($name in $names) {
                $i++
                New-QemuImage (Join-Path $disks "$name.qcow2") 8M -Write "write -P 0x$($i)a 0 512k", "write -P 0x$($i)b 6M 64k" | Out-Null
            }
            Set-Content -LiteralPath (Join-Path $disks 'README.txt') -Value 'not a disk'
            Push-Location -LiteralPath $archive
            try {
                $results = @(Get-ChildItem (Join-Path $disks '*.qcow2') | ForEach-Object {
                        Convert-QcowImage $_.FullName "$($_.BaseName).small.qcow2" -Compress
                    })
            } finally {
                Pop-Location
            }
            $results.Count | Should -Be 3
            @($results.Destination | Sort-Object) | Should -Be @($names | ForEach-Object { Join-Path $archive "$_.small.qcow2" })
            foreach ($r in $results) {
                $r.CompressedClusters | Should -Be 9
                $r.DataClusters | Should -Be 0
                Assert-QemuIdentical $r.Source $r.Destination
                (Assert-QemuClean $r.Destination).CompressedClusters | Should -Be 9
            }
            # And piped straight in: a FileInfo binds to -LiteralPath.
            $direct = Get-Item -LiteralPath (Join-Path $disks 'web02.qcow2') | Convert-QcowImage -Destination (Join-Path $archive 'direct.qcow2')
            $direct.Source | Should -Be (Join-Path $disks 'web02.qcow2')
            Assert-QemuIdentical $direct.Source $direct.Destination
        } finally {
            Remove-QcowTestFolder $disks
            Remove-QcowTestFolder $archive
        }
    }

    It 'several sources for one destination: QcowPS.OneSourcePerDestination stops the command after the first' {
        $second = New-QemuImage (Join-Path $dir 'app02.qcow2') 16M -Write 'write -P 0x71 0 64k'
        $out = New-Name $dir 'one-destination'
        $caught = $null
        $results = @()
        try {
            Get-Item -LiteralPath $source, $second | Convert-QcowImage -Destination $out | ForEach-Object { $results += $_ }
        } catch {
            $caught = $_
        }
        $caught | Should -Not -BeNullOrEmpty
        $caught.FullyQualifiedErrorId | Should -BeLike 'QcowPS.OneSourcePerDestination,*'
        $results.Count | Should -Be 1
        # The destination holds the first source, whole; the second was not written over it.
        Assert-QemuIdentical $source $out
        Remove-Item -LiteralPath $second
    }

    It 'an image a running QEMU holds is refused with QcowPS.ImageInUse, and nothing is written' {
        $held = Join-Path $dir 'held.qcow2'
        Copy-Item -LiteralPath $source -Destination $held
        $out = New-Name $dir 'from-held'
        $qemu = Start-QemuIoHolder $held
        try {
            $result = Convert-QcowImage $held $out -ErrorAction SilentlyContinue -ErrorVariable err
        } finally {
            Stop-QemuIoHolder $qemu
        }
        $result | Should -BeNullOrEmpty
        Get-ErrorIds $err | Should -Be @('QcowPS.ImageInUse')
        $out | Should -Not -Exist
    }

    It 'Ctrl+C (stopping the pipeline) deletes the partial image and leaves nothing under the destination name' {
        # 32 MiB of random bytes compressed in 512-byte clusters on one thread: seconds of work, stopped as soon as it starts.
        $big = Join-Path $dir 'big.raw'
        [IO.File]::WriteAllBytes($big, (New-RandomBytes -Length 32MB -Seed 5))
        $out = Join-Path $dir 'big.qcow2'
        $ps = [powershell]::Create()
        try {
            $script = 'param($Module, $Source, $Destination) Import-Module $Module; $ProgressPreference = ''SilentlyContinue''; ' +
                'Convert-QcowImage -LiteralPath $Source -Destination $Destination -Format Raw -Compress -ClusterSize 512 -ThrottleLimit 1'
            [void]$ps.AddScript($script).AddArgument((Get-QcowPSModulePath)).AddArgument($big).AddArgument($out)
            $handle = $ps.BeginInvoke()
            $deadline = [DateTime]::UtcNow.AddSeconds(30)
            $partial = $null
            while (-not $partial -and -not $handle.IsCompleted -and [DateTime]::UtcNow -lt $deadline) {
                Start-Sleep -Milliseconds 10
                $partial = Get-Leftovers $dir
            }
            # What Ctrl+C does at the prompt: stop the running pipeline.
            $ps.Stop()
            $partial | Should -Not -BeNullOrEmpty -Because "the image is written under a temporary name ($($ps.Streams.Error))"
            "$($ps.InvocationStateInfo.State)" | Should -Be 'Stopped' -Because 'the conversion must have been running when it was stopped'
            $ps.Streams.Error | Should -BeNullOrEmpty
        } finally {
            $ps.Dispose()
            Remove-Item -LiteralPath $big -ErrorAction SilentlyContinue
        }
        $out | Should -Not -Exist
        Get-Leftovers $dir | Should -BeNullOrEmpty
    }
}
