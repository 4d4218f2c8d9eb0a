#Requires -Version 7.0
<#
    Persistent bitmaps over NBD (issue 12): Get-QcowBitmap on an nbd+unix:// URI lists the
    qemu:dirty-bitmap contexts the export offers and -Extent reads them through the client, equal to
    nbdinfo --map; Convert-QcowImage <uri> -Bitmap NAME -BackingFile PREV makes the increment from the
    export. The servers are qemu-nbd -r -B NAME and our own Start-QcowNbdServer -ReadOnly, on Unix
    sockets in the test's folder, stopped in finally blocks. Without the tools the tests are skipped,
    except on CI ($env:CI -eq 'true'), where they fail.
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = Test-SkipWithoutQemu
    $haveTools = @(Get-Command qemu-nbd, nbdinfo -CommandType Application -ErrorAction SilentlyContinue | Select-Object -ExpandProperty Name -Unique).Count -eq 2
    $SkipNbd = $SkipImages -or (-not $haveTools -and $env:CI -ne 'true')
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-QcowPSModule | Out-Null
    $ProgressPreference = 'SilentlyContinue'

    function Start-QemuNbdBitmap([string]$Image, [string]$Bitmap, [string]$Folder) {
        <# qemu-nbd -r -B NAME on a new Unix socket in $Folder (Start-NbdPeer); stop it with Stop-NbdPeer. #>
        Start-NbdPeer -Tool qemu-nbd -Folder $Folder -SocketArgument '-k' -Arguments '-r', '-t', '-e', '0', '-f', 'qcow2', '-B', $Bitmap, $Image
    }

    function Get-StoredRuns([string]$Image) {
        <# The data runs an image stores itself (depth 0), from qemu-img map. #>
        Get-QemuMap $Image | Where-Object { $_.depth -eq 0 -and $_.data } | ForEach-Object { [pscustomobject]@{ Offset = [long]$_.start; Length = [long]$_.length } }
    }

    function Test-Inside($Runs, $Dirty) {
        <# True when every run lies inside one of the dirty runs. #>
        foreach ($r in $Runs) {
            $inside = $Dirty | Where-Object { $_.Offset -le $r.Offset -and $r.Offset + $r.Length -le $_.Offset + $_.Length }
            if (-not $inside) { return $false }
        }
        $true
    }
}

Describe 'Persistent bitmaps over NBD' -Skip:$SkipNbd {
    BeforeAll {
        Assert-QemuTools
        foreach ($tool in 'qemu-nbd', 'nbdinfo') {
            if (-not (Get-Command $tool -CommandType Application -ErrorAction Ignore)) { throw "$tool is missing (apt-get install qemu-utils libnbd-bin; .ci/run does)" }
        }
        $dir = New-QcowTestFolder
        $img = New-QemuImage -Path (Join-Path $dir 'vm.qcow2') -Size 16M
        Invoke-QemuImg 'bitmap', '--add', '-g', '4096', $img, 'b1'
        Invoke-QemuImg 'bitmap', '--add', '-g', '1M', $img, 'b2'
        Invoke-QemuIo $img 'write -P 1 100k 3k', 'write -P 2 5M 70k', 'write -P 3 15M 512'
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'Get-QcowBitmap -Extent on a qemu-nbd -B URI equals nbdinfo --map=qemu:dirty-bitmap:b1' {
        $expected = Get-QemuBitmapMap $img 'b1'
        $peer = Start-QemuNbdBitmap -Image $img -Bitmap 'b1' -Folder $dir
        try {
            $runs = @(Get-QcowBitmap $peer.Uri -Extent -ErrorAction Stop)
            $runs[0].Path | Should -Be $peer.Uri
            $runs[0].Name | Should -Be 'b1'
            ConvertTo-BitmapRunText $runs | Should -Be $expected
            @($runs | Where-Object Dirty).Count | Should -Be 3
        } finally { Stop-NbdPeer $peer }
    }

    It 'lists the bitmaps the export offers, with what NBD cannot say left empty' {
        $peer = Start-QemuNbdBitmap -Image $img -Bitmap 'b2' -Folder $dir
        try {
            $b = @(Get-QcowBitmap $peer.Uri -ErrorAction Stop)
            $b.Name | Should -Be 'b2'
            $b[0].DirtyBytes | Should -Be (1MB + 1MB + 1MB) -Because '1 MiB granularity: 100k, 5M and 15M each dirty one MiB'
            $b[0].Granularity | Should -BeNullOrEmpty
            $b[0].TableOffset | Should -BeNullOrEmpty
            $b[0].Enabled | Should -BeNullOrEmpty
            (Get-QcowBitmap $peer.Uri | Out-String -Width 200) | Should -Match 'b2'
            Get-QcowBitmap $peer.Uri -Name 'b1' -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.BitmapNotFound*'
        } finally { Stop-NbdPeer $peer }
    }

    It 'Convert-QcowImage -Bitmap from an export that does not offer it is QcowPS.BitmapNotFound, nothing written' {
        $peer = Start-QemuNbdBitmap -Image $img -Bitmap 'b2' -Folder $dir
        try {
            $full = Join-Path $dir 'nf-full.qcow2'
            Convert-QcowImage $img -Destination $full | Out-Null
            $inc = Join-Path $dir 'nf-inc.qcow2'
            Convert-QcowImage $peer.Uri -Destination $inc -Bitmap 'b1' -BackingFile $full -ErrorVariable err -ErrorAction SilentlyContinue | Out-Null
            $err[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.BitmapNotFound*'
            $inc | Should -Not -Exist
        } finally { Stop-NbdPeer $peer }
    }

    It 'our own server offers the bitmaps: Get-QcowBitmap -Extent through it equals the file' {
        $sock = Join-Path $dir 'ours.sock'
        $server = Start-QcowNbdServer -LiteralPath $img -ReadOnly -Socket $sock -ErrorAction Stop
        try {
            (Get-QcowBitmap $server.Uri).Name | Should -Be @('b1', 'b2')
            foreach ($name in 'b1', 'b2') {
                ConvertTo-BitmapRunText (Get-QcowBitmap $server.Uri -Name $name -Extent) |
                    Should -Be (ConvertTo-BitmapRunText (Get-QcowBitmap $img -Name $name -Extent -ForceShare))
            }
        } finally { $server | Stop-QcowNbdServer }
    }
}

Describe 'Incremental backup from an NBD export' -Skip:$SkipNbd {
    BeforeAll {
        Assert-QemuTools
        $dir = New-QcowTestFolder
    }
    AfterAll { Remove-QcowTestFolder $dir }

    It 'full, writes, increment via <Server>, again: each restored point equals the source then; increments hold only dirty clusters' -ForEach @(
        @{ Server = 'qemu-nbd -B' }, @{ Server = 'Start-QcowNbdServer' }
    ) {
        $tag = if ($Server -eq 'qemu-nbd -B') { 'q' } else { 'o' }
        # Every cluster holds data, so only the bitmap (not holes) keeps the copy small.
        $vm = New-QemuImage -Path (Join-Path $dir "$tag-vm.qcow2") -Size 32M -Write 'write -P 1 0 32M'
        Convert-QcowImage $vm -Destination (Join-Path $dir "$tag-full.qcow2") | Out-Null
        Invoke-QemuImg 'bitmap', '--add', '-g', '64k', $vm, 'backup' | Out-Null
        $previous = "$tag-full.qcow2"
        $random = [Random]::new(21)
        foreach ($round in 1, 2) {
            $writes = foreach ($i in 1..3) { "write -P $($round * 16 + $i) $($random.Next(0, 480) * 64KB + $random.Next(0, 60KB)) $($random.Next(1, 90KB))" }
            Invoke-QemuIo $vm $writes | Out-Null
            $point = Join-Path $dir "$tag-point$round.qcow2"
            Copy-Item $vm $point
            $dirty = @(Get-QcowBitmap $vm -Name 'backup' -Extent | Where-Object Dirty)
            $increment = Join-Path $dir "$tag-inc$round.qcow2"
            if ($Server -eq 'qemu-nbd -B') {
                $peer = Start-QemuNbdBitmap -Image $vm -Bitmap 'backup' -Folder $dir
                try { Convert-QcowImage $peer.Uri -Destination $increment -Bitmap 'backup' -BackingFile $previous -ErrorAction Stop | Out-Null }
                finally { Stop-NbdPeer $peer }
            } else {
                $server = Start-QcowNbdServer -LiteralPath $vm -ReadOnly -Socket (Join-Path $dir "$tag-$round.sock") -ErrorAction Stop
                try {
                    Convert-QcowImage $server.Uri -Destination $increment -Bitmap 'backup' -BackingFile $previous -ErrorAction Stop | Out-Null
                    # The export was read only around the dirty runs (widened to the conversion's 1 MiB chunks), not whole.
                    $chunks = @($dirty | ForEach-Object { [long][Math]::Floor($_.Offset / 1MB)..[long][Math]::Floor(($_.Offset + $_.Length - 1) / 1MB) } | Sort-Object -Unique)
                    (Get-QcowNbdServer -Id $server.Id).BytesRead | Should -BeLessOrEqual ($chunks.Count * 1MB)
                    (Get-QcowNbdServer -Id $server.Id).BytesRead | Should -BeGreaterThan 0
                }
                finally { $server | Stop-QcowNbdServer }
            }
            Invoke-QemuImg 'bitmap', '--clear', $vm, 'backup' | Out-Null

            (Get-QemuCheck $increment).Corruptions | Should -Be 0
            & qemu-img compare -q $point $increment
            $LASTEXITCODE | Should -Be 0 -Because "the chain up to increment $round must equal the source then"
            $stored = @(Get-StoredRuns $increment)
            $stored.Count | Should -BeGreaterThan 0
            Test-Inside $stored $dirty | Should -BeTrue -Because 'an increment stores only clusters its bitmap marks dirty'
            ($stored | Measure-Object -Property Length -Sum).Sum | Should -BeLessOrEqual ($dirty | Measure-Object -Property Length -Sum).Sum
            $restored = Join-Path $dir "$tag-restored$round.qcow2"
            Convert-QcowImage $increment -Destination $restored | Out-Null
            & qemu-img compare -q $point $restored
            $LASTEXITCODE | Should -Be 0 -Because "restore point $round, converted from the chain, must equal the source then"
            $previous = "$tag-inc$round.qcow2"
        }
    }
}
