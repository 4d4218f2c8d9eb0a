#Requires -Version 7.0
<#
    Pester 5 tests of the comment-based help built from docs/: every exported cmdlet has it, and its
    parameter facts agree with the cmdlet.
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = Test-SkipWithoutQemu

    $module = Import-QcowPSModule
    $ExportedCmdlets = @($module.ExportedCmdlets.Keys | Sort-Object | ForEach-Object { @{ Name = $_ } })
}

BeforeAll {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $QcowModule = Import-QcowPSModule
    $ProgressPreference = 'SilentlyContinue'
}

Describe 'Comment-based help is built from docs/' {
    It 'the module ships en-US/QcowPS.dll-Help.xml' {
        Join-Path $QcowModule.ModuleBase 'en-US/QcowPS.dll-Help.xml' | Should -Exist -Because `
            'the help is compiled from docs/*.md by build/QcowPS.HelpBuilder (see docs/README.md)'
    }

    It '<Name> has a synopsis, a description, every parameter described and an example' -ForEach $ExportedCmdlets {
        $help = Get-Help -Name $Name -Full
        $help.Synopsis | Should -Not -BeNullOrEmpty
        $help.Synopsis.Trim() | Should -Not -BeLike "$Name *" -Because 'a synopsis that is the syntax line means no help was found'
        ($help.Description.Text -join "`n").Trim() | Should -Not -BeNullOrEmpty
        @($help.Examples.Example).Count | Should -BeGreaterOrEqual 1
        foreach ($example in @($help.Examples.Example)) { "$($example.Code)".Trim() | Should -Not -BeNullOrEmpty }

        $common = [System.Management.Automation.PSCmdlet]::CommonParameters + [System.Management.Automation.PSCmdlet]::OptionalCommonParameters
        $parameters = (Get-Command -Name $Name).Parameters.Keys | Where-Object { $_ -notin $common }
        foreach ($parameter in $parameters) {
            $entry = @($help.Parameters.Parameter) | Where-Object Name -eq $parameter
            $entry | Should -Not -BeNullOrEmpty -Because "-$parameter of $Name needs a help entry"
            ($entry.Description.Text -join "`n").Trim() | Should -Not -BeNullOrEmpty -Because "-$parameter of $Name needs a description"
        }
    }

    It '<Name>: the help''s parameter facts agree with the cmdlet' -ForEach $ExportedCmdlets {
        $help = Get-Help -Name $Name -Full
        $common = [System.Management.Automation.PSCmdlet]::CommonParameters + [System.Management.Automation.PSCmdlet]::OptionalCommonParameters
        foreach ($p in (Get-Command -Name $Name).Parameters.Values | Where-Object Name -notin $common) {
            $entry = @($help.Parameters.Parameter) | Where-Object Name -eq $p.Name | Select-Object -First 1
            $entry | Should -Not -BeNullOrEmpty -Because "-$($p.Name) of $Name needs a help entry"
            $sets = @($p.ParameterSets.Values)
            $because = "the help of -$($p.Name) of $Name must match the code"

            $type = [Nullable]::GetUnderlyingType($p.ParameterType)
            if (-not $type) { $type = $p.ParameterType }
            "$($entry.type.name)" | Should -Be $type.Name -Because $because
            [bool]::Parse($entry.required) | Should -Be ([bool]($sets | Where-Object IsMandatory)) -Because $because
            $position = $sets[0].Position
            $expectedPosition = if ($position -lt 0) { 'named' } else { "$position" }
            "$($entry.position)" | Should -Be $expectedPosition -Because $because
            $expectedAliases = @($p.Aliases | Sort-Object)
            $helpAliases = @(if ($entry.aliases -and $entry.aliases -ne 'none') { $entry.aliases -split ',\s*' | Sort-Object })
            ($helpAliases -join ', ') | Should -Be ($expectedAliases -join ', ') -Because $because
            $globbing = [bool]($p.Attributes | Where-Object { $_ -is [System.Management.Automation.SupportsWildcardsAttribute] })
            [bool]::Parse($entry.globbing) | Should -Be $globbing -Because $because
            $expectedPipeline = @(
                if ($sets | Where-Object ValueFromPipelineByPropertyName) { 'ByPropertyName' }
                if ($sets | Where-Object ValueFromPipeline) { 'ByValue' })
            $helpPipeline = @(if ($entry.pipelineInput -match '\((?<kinds>[^)]*)\)') { $Matches.kinds -split ',\s*' | Sort-Object })
            ($helpPipeline -join ', ') | Should -Be ($expectedPipeline -join ', ') -Because $because
        }
    }

    It 'about_QcowPS is available' {
        Join-Path $QcowModule.ModuleBase 'en-US/about_QcowPS.help.txt' | Should -Exist
        (Get-Help about_QcowPS | Out-String) | Should -BeLike '*QcowPS*'
    }
}
