#Requires -Version 7.0
<#
    Resize-QcowImage, two sentences of its help: "A version 2 image with snapshots cannot be resized"
    (qemu-img resize refuses it too: the oracle) and "Resizing to the current size changes nothing"
    (the file stays byte for byte the same).
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = Test-SkipWithoutQemu
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $QcowModule = Import-QcowPSModule
    $ProgressPreference = 'SilentlyContinue'
}

Describe 'Resize-QcowImage: the claims of its help' -Skip:$SkipImages {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder -Prefix 'qcowps-pester-resize'
        function New-SnapshotImage([string]$Name, [string]$Compat) {
            $path = New-QemuImage (Join-Path $dir $Name) 64M -Option @{ compat = $Compat } -Write 'write -P 0x21 0 1M'
            Invoke-QemuImg 'snapshot', '-c', 'before', $path | Out-Null
            Invoke-QemuIo -Path $path -Command 'write -P 0x22 0 64k'
            $path
        }
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'a version 2 image with snapshots cannot be resized: QcowPS.InvalidArgument, file unchanged, as qemu-img refuses' {
        $img = New-SnapshotImage 'v2-snap.qcow2' '0.10'
        # The oracle: QEMU refuses the same resize on a copy.
        $copy = Join-Path $dir 'v2-snap-qemu.qcow2'
        Copy-Item -LiteralPath $img -Destination $copy
        $qemu = & qemu-img resize $copy 128M 2>&1
        $LASTEXITCODE | Should -Not -Be 0 -Because "qemu-img said: $qemu"
        "$qemu" | Should -BeLike '*v2 image which has snapshots*'

        $hash = (Get-FileHash -LiteralPath $img).Hash
        Resize-QcowImage -LiteralPath $img -Size 128MB -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.InvalidArgument,*'
        $err[0].Exception.Message | Should -BeLike '*version 2 image with snapshots*'
        (Get-FileHash -LiteralPath $img).Hash | Should -Be $hash
        (Get-QemuImageInfo $img).'virtual-size' | Should -Be 64MB
    }

    It 'the same image as version 3 grows (the refusal is about version 2)' {
        $img = New-SnapshotImage 'v3-snap.qcow2' '1.1'
        (Resize-QcowImage -LiteralPath $img -Size 128MB).VirtualSize | Should -Be 128MB
        (Get-QemuImageInfo $img).'virtual-size' | Should -Be 128MB
        @((Get-QemuImageInfo $img).snapshots) | Should -HaveCount 1
        (Get-QemuCheck $img).ExitCode | Should -Be 0
    }

    It 'resizing <Name> to its current size leaves the file byte-identical' -ForEach @(
        @{ Name = 'a version 3 image'; File = 'same-v3.qcow2'; Compat = '1.1'; Snapshot = $false; Size = 64MB }
        @{ Name = 'a version 2 image with snapshots'; File = 'same-v2.qcow2'; Compat = '0.10'; Snapshot = $true; Size = 64MB }
        @{ Name = 'a size that rounds up to the current one'; File = 'same-round.qcow2'; Compat = '1.1'; Snapshot = $false; Size = 64MB - 100 }
    ) {
        $img = if ($Snapshot) { New-SnapshotImage $File $Compat } else {
            New-QemuImage (Join-Path $dir $File) 64M -Option @{ compat = $Compat } -Write 'write -P 0x31 0 2M'
        }
        $before = Get-FileBytes $img
        $info = Resize-QcowImage -LiteralPath $img -Size $Size
        $info.VirtualSize | Should -Be 64MB
        $after = Get-FileBytes $img
        $after.Length | Should -Be $before.Length
        Get-BytesHash $after | Should -Be (Get-BytesHash $before)
    }
}
