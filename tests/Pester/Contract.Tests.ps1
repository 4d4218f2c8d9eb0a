#Requires -Version 7.0
<#
    The cmdlet contract of ../../../shared/design/CMDLETS.md, checked on every exported cmdlet, so that drift
    fails CI instead of a user: the path parameters (names, aliases, positions, pipeline binding, wildcards),
    SupportsShouldProcess on everything that changes something, an OutputType that matches what the cmdlet
    emits, and paths with [ ] * and spaces through -LiteralPath and the pipeline.

    Data-driven from Get-Command -Module QcowPS: a cmdlet added later is checked for its parameters at once,
    and fails "has no sample invocation" (naming it) until a line in $Samples below says how to run it.
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = Test-SkipWithoutQemu
    Import-QcowPSModule | Out-Null
    $Cmdlets = @(Get-Command -Module QcowPS -CommandType Cmdlet | Sort-Object Name | ForEach-Object { @{ Name = $_.Name } })
    $ImageCmdlets = @($Cmdlets | Where-Object { (Get-Command $_.Name).Parameters.ContainsKey('LiteralPath') -or (Get-Command $_.Name).Parameters.ContainsKey('Path') })
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    Import-QcowPSModule | Out-Null

    # Verbs whose cmdlets only look: everything else changes something and must support -WhatIf/-Confirm.
    $script:LookingVerbs = 'Get', 'Test', 'Compare', 'Read', 'Measure', 'Find', 'Search', 'Show', 'Resolve', 'Wait', 'Watch'

    # How to run each cmdlet on the image 'vm [1]*.qcow2' (64 MiB qcow2 with a snapshot 'snap'), given the
    # folder it is in: the parameters besides the image. New cmdlets get a line here.
    $script:Samples = @{
        'Get-QcowInfo'         = { param($dir) @{} }
        'Get-QcowSnapshot'     = { param($dir) @{} }
        'Read-QcowBlock'       = { param($dir) @{ Offset = 0; Length = 4096 } }
        'Get-QcowCluster'      = { param($dir) @{ Length = 256KB } }
        'Get-QcowTable'        = { param($dir) @{ Table = 'L1' } }
        'Write-QcowBlock'      = { param($dir) @{ Offset = 0; Data = [byte[]](1, 2, 3) } }
        'New-QcowSnapshot'     = { param($dir) @{ Name = 'contract' } }
        'Remove-QcowSnapshot'  = { param($dir) @{ Name = 'snap'; Confirm = $false } }
        'Restore-QcowSnapshot' = { param($dir) @{ Name = 'snap'; Confirm = $false } }
        'Resize-QcowImage'     = { param($dir) @{ Size = 128MB } }
        'Test-QcowImage'       = { param($dir) @{ Detailed = $true } }
        'Repair-QcowImage'     = { param($dir) @{} }
        'Convert-QcowImage'    = { param($dir) @{ Destination = (Join-Path $dir 'out [2].qcow2') } }
        'Compare-QcowImage'    = { param($dir) @{ DifferencePath = (Join-Path $dir 'other.qcow2') } }
        'New-QcowImage'        = { param($dir) @{ Size = 1MB; Force = $true } }
        # Bitmap cmdlets other than New- need a bitmap: made by qemu-img, as a user's VM would have one.
        'Get-QcowBitmap'       = { param($dir) Add-ContractBitmap $dir 'b1'; @{} }
        'New-QcowBitmap'       = { param($dir) @{ Name = 'contract' } }
        'Remove-QcowBitmap'    = { param($dir) Add-ContractBitmap $dir 'b1'; @{ Name = 'b1'; Confirm = $false } }
        'Clear-QcowBitmap'     = { param($dir) Add-ContractBitmap $dir 'b1'; @{ Name = 'b1'; Confirm = $false } }
        'Enable-QcowBitmap'    = { param($dir) Add-ContractBitmap $dir 'b1'; @{ Name = 'b1' } }
        'Disable-QcowBitmap'   = { param($dir) Add-ContractBitmap $dir 'b1'; @{ Name = 'b1' } }
        'Merge-QcowBitmap'     = { param($dir) Add-ContractBitmap $dir 'b1'; Add-ContractBitmap $dir 'b2'; @{ Name = 'b1'; Target = 'b2' } }
        'Get-QcowPartition'    = { param($dir) @{} }
        'Get-QcowFileSystem'   = { param($dir) @{} }
        'Optimize-QcowImage'   = { param($dir) @{ Confirm = $false } }
        # The servers these start are stopped after each test (AfterEach below), which releases the image.
        'Start-QcowNbdServer'  = { param($dir) @{ Socket = (Join-Path $dir 'contract.sock'); ReadOnly = $true } }
        'Get-QcowNbdServer'    = { param($dir) @{} }
        'Stop-QcowNbdServer'   = { param($dir) @{} }
        'New-QcowPartitionTable' = { param($dir) @{ Force = $true; Confirm = $false } }
    }

    function script:New-ContractFolder {
        $dir = New-QcowTestFolder -Prefix 'qcowps-contract'
        $image = Join-Path $dir 'vm [1]*.qcow2'
        New-QemuImage -Path $image -Size 64M -Write 'write -P 0x11 0 64k' | Out-Null
        Invoke-QemuImg 'snapshot', '-c', 'snap', $image | Out-Null
        New-QemuImage -Path (Join-Path $dir 'other.qcow2') -Size 64M | Out-Null
        # A decoy that -Path 'vm [1]*.qcow2' as a wildcard would also match: -LiteralPath must not touch it.
        New-QemuImage -Path (Join-Path $dir 'vm 1-decoy.qcow2') -Size 1M | Out-Null
        return $dir
    }

    function script:Add-ContractBitmap([string]$Dir, [string]$Name) {
        Invoke-QemuImg 'bitmap', '--add', (Join-Path $Dir 'vm [1]*.qcow2'), $Name | Out-Null
    }

    function script:Get-Sample([string]$Name, [string]$Dir) {
        $sample = $script:Samples[$Name]
        if (-not $sample) {
            throw "The cmdlet $Name has no sample invocation in Contract.Tests.ps1 (`$Samples): add one line saying how to run it on an image."
        }
        return & $sample $Dir
    }

    function script:Test-TypeDeclared($Object, [string[]]$Declared) {
        $names = @($Object.PSObject.TypeNames)
        foreach ($d in $Declared) { if ($names -contains $d -or $names -contains ($d -replace '#.*$')) { return $true } }
        return $false
    }
}

Describe 'Every exported cmdlet' {
    It 'qemu-img and qemu-io are on PATH' {
        Assert-QemuToolsInIt
    }

    Context '<Name>' -ForEach $Cmdlets {
        BeforeAll { $command = Get-Command $Name }

        It 'has a sample invocation in this contract test' {
            $script:Samples.ContainsKey($Name) | Should -BeTrue -Because "every cmdlet is run by the contract test; add $Name to `$Samples in Contract.Tests.ps1"
        }

        It 'declares an OutputType' {
            $command.OutputType.Count | Should -BeGreaterThan 0 -Because "$Name must say what it emits"
        }

        It 'supports -WhatIf and -Confirm when its verb changes something' {
            $verb = $Name.Split('-')[0]
            if ($verb -notin $script:LookingVerbs) {
                $command.Parameters.ContainsKey('WhatIf') | Should -BeTrue -Because "$Name ($verb) changes something: SupportsShouldProcess"
                $command.Parameters.ContainsKey('Confirm') | Should -BeTrue
            }
        }

        It 'has an error-free help page with a synopsis and an example' {
            $help = Get-Help $Name -Full
            "$($help.Synopsis)".Trim() | Should -Not -BeNullOrEmpty
            "$($help.Synopsis)".Trim() | Should -Not -Match "^$Name"
            @($help.Examples.Example).Count | Should -BeGreaterThan 0
        }
    }
}

Describe 'Every cmdlet that takes an image' {
    Context '<Name>' -ForEach $ImageCmdlets {
        BeforeAll {
            $command = Get-Command $Name
            $pathParam = $command.Parameters['Path']
            $literalParam = $command.Parameters['LiteralPath']
        }

        It 'has -Path at position 0, from the pipeline by value and by property name' {
            $pathParam | Should -Not -BeNullOrEmpty -Because "$Name takes an image with -Path"
            $attributes = @($pathParam.Attributes | Where-Object { $_ -is [System.Management.Automation.ParameterAttribute] })
            $attributes.Position | Should -Contain 0
            $attributes.ValueFromPipeline | Should -Contain $true
            $attributes.ValueFromPipelineByPropertyName | Should -Contain $true
        }

        It 'has -LiteralPath with the aliases PSPath, LP and FullName, from the pipeline by property name' {
            $literalParam | Should -Not -BeNullOrEmpty -Because "$Name takes an image with -LiteralPath, as every image cmdlet does"
            foreach ($alias in 'PSPath', 'LP', 'FullName') { $literalParam.Aliases | Should -Contain $alias }
            @($literalParam.Attributes | Where-Object { $_ -is [System.Management.Automation.ParameterAttribute] }).ValueFromPipelineByPropertyName | Should -Contain $true
        }

        It 'puts -Path and -LiteralPath in different parameter sets' {
            $pathSets = @($pathParam.ParameterSets.Keys)
            $literalSets = @($literalParam.ParameterSets.Keys)
            $pathSets | Where-Object { $_ -in $literalSets -and $_ -ne '__AllParameterSets' } | Should -BeNullOrEmpty
        }

        It 'marks -Path as taking wildcards, unless it creates the file' {
            if ($Name -ne 'New-QcowImage') {
                @($pathParam.Attributes | Where-Object { $_ -is [System.Management.Automation.SupportsWildcardsAttribute] }).Count | Should -Be 1
            }
        }
    }
}

Describe 'Paths with [ ] * and spaces, on every cmdlet that takes an image' -Skip:$SkipImages {
    Context '<Name>' -ForEach $ImageCmdlets {
        BeforeEach {
            $dir = New-ContractFolder
            $image = Join-Path $dir 'vm [1]*.qcow2'
            $parameters = Get-Sample $Name $dir
            $command = Get-Command $Name
            $declared = @($command.OutputType.Name)
        }
        AfterEach {
            # Start-QcowNbdServer leaves a server running in the session: stop it before the folder goes.
            Get-QcowNbdServer | Stop-QcowNbdServer
            Remove-QcowTestFolder $dir
        }

        It 'works through -LiteralPath, emitting only its declared output types' {
            $out = @(& $Name -LiteralPath $image @parameters -ErrorVariable errs -ErrorAction SilentlyContinue)
            $errs | Should -BeNullOrEmpty -Because "$Name -LiteralPath '$image' must find the file"
            foreach ($o in $out) {
                Test-TypeDeclared $o $declared | Should -BeTrue -Because "$Name emitted $($o.PSObject.TypeNames[0]), declared: $($declared -join ', ')"
            }
        }

        It 'works with the file piped from Get-ChildItem -LiteralPath' {
            if ($Name -eq 'New-QcowImage') { Set-ItResult -Skipped -Because 'it creates files, it does not take existing ones from the pipeline' ; return }
            $out = @(Get-ChildItem -LiteralPath $image | & $Name @parameters -ErrorVariable errs -ErrorAction SilentlyContinue)
            $errs | Should -BeNullOrEmpty -Because "Get-ChildItem -LiteralPath '$image' | $Name must bind the file"
        }

        It 'leaves the image unchanged with -WhatIf' {
            if (-not $command.Parameters.ContainsKey('WhatIf')) { Set-ItResult -Skipped -Because "$Name does not change anything"; return }
            $before = (Get-FileHash -LiteralPath $image).Hash
            $files = @(Get-ChildItem -LiteralPath $dir).Name
            & $Name -LiteralPath $image @parameters -WhatIf -ErrorAction Stop | Out-Null
            (Get-FileHash -LiteralPath $image).Hash | Should -Be $before
            @(Get-ChildItem -LiteralPath $dir).Name | Should -Be $files
        }

        It 'reports a missing file as QcowPS.FileNotFound with the full path as TargetObject' {
            $missing = Join-Path $dir 'missing [3].qcow2'
            if ($Name -eq 'New-QcowImage') { Set-ItResult -Skipped -Because 'a missing file is what it creates'; return }
            & $Name -LiteralPath $missing @parameters -ErrorVariable errs -ErrorAction SilentlyContinue | Out-Null
            $errs.Count | Should -BeGreaterThan 0
            $errs[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.FileNotFound*'
            $errs[0].TargetObject | Should -Be $missing
        }

        It 'reports a text file as QcowPS.WrongImageFormat with the full path as TargetObject' {
            if ($Name -eq 'New-QcowImage') { Set-ItResult -Skipped -Because 'it creates files'; return }
            $text = Join-Path $dir 'notes [x].txt'
            Set-Content -LiteralPath $text -Value ('not an image ' * 100)
            # Named as qcow2 where the cmdlet takes -Format (a raw file on the command line reads as raw otherwise).
            if ($command.Parameters.ContainsKey('Format')) { $parameters['Format'] = 'Qcow2' }
            Push-Location -LiteralPath $dir
            try {
                & $Name -LiteralPath 'notes [x].txt' @parameters -ErrorVariable errs -ErrorAction SilentlyContinue | Out-Null
            } finally { Pop-Location }
            $errs.Count | Should -BeGreaterThan 0
            $errs[0].FullyQualifiedErrorId | Should -BeLike 'QcowPS.WrongImageFormat*'
            $errs[0].TargetObject | Should -Be $text
        }
    }
}
