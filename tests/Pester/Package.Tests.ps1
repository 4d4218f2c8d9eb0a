#Requires -Version 7.0
<#
    The module package, tested as a user meets it: build/pack.ps1 writes QcowPS.<version>.nupkg; a local
    folder registered as a PSResourceGet repository serves it; Save-PSResource puts it in a scratch module
    path; a fresh pwsh with only that path imports QcowPS by name, reads its help and runs cmdlets, whose
    image qemu-img checks. PSResourceGet ships with PowerShell 7.4+, so nothing comes from outside; its
    repository list lives under XDG_DATA_HOME, pointed at a scratch folder, so the user's is never touched.
    The package is built from what is already built (pack.ps1 -SkipBuild): build/test.ps1 builds first.
#>

BeforeDiscovery {
    Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
    $SkipImages = Test-SkipWithoutQemu
}

Describe 'The QcowPS package' -Skip:$SkipImages {
    BeforeAll {
        Import-Module "$PSScriptRoot/TestHelpers.psm1" -Force
        $repo = (Resolve-Path (Join-Path $PSScriptRoot '../..')).ProviderPath
        $scratch = New-QcowTestFolder -Prefix 'qcowps-package'
        $feed = Join-Path $scratch 'feed'
        $modules = Join-Path $scratch 'modules'
        $dataHome = Join-Path $scratch 'data'
        $work = Join-Path $scratch 'work'
        New-Item -ItemType Directory -Path $modules, $dataHome, $work -Force | Out-Null
        $version = (Import-PowerShellDataFile -LiteralPath (Join-Path $repo 'QcowPS.psd1')).ModuleVersion
        $isolated = @{ XDG_DATA_HOME = $dataHome }

        Invoke-ChildPwsh -Environment $isolated -Script "& '$repo/build/pack.ps1' -OutputPath '$feed' -SkipBuild | Out-Null" | Out-Null
        $package = Join-Path $feed "QcowPS.$version.nupkg"
    }
    AfterAll { Remove-QcowTestFolder $scratch }

    It 'qemu-img and qemu-io are on PATH' { Assert-QemuToolsInIt }

    It 'pack.ps1 writes QcowPS.<version>.nupkg' {
        $package | Should -Exist
    }

    It 'holds the module (manifest, format file, DLLs, en-US help) and nothing of tests, sources or symbols' {
        Add-Type -AssemblyName System.IO.Compression.FileSystem
        $zip = [IO.Compression.ZipFile]::OpenRead($package)
        try { $names = @($zip.Entries.FullName) } finally { $zip.Dispose() }
        foreach ($needed in 'QcowPS.psd1', 'QcowPS.format.ps1xml', 'bin/QcowPS.dll', 'bin/QcowPS.Engine.dll', 'en-US/QcowPS.dll-Help.xml', 'en-US/about_QcowPS.help.txt') {
            $names | Should -Contain $needed
        }
        $names | Where-Object { $_ -match '\.(cs|csproj|pdb|sln)$|^tests/|^src/|^docs/|^build/|Tests\.ps1$' } | Should -BeNullOrEmpty
    }

    It 'has a manifest with version, description, tags, project and licence links' {
        Add-Type -AssemblyName System.IO.Compression.FileSystem
        $zip = [IO.Compression.ZipFile]::OpenRead($package)
        try {
            $entry = $zip.Entries | Where-Object FullName -eq 'QcowPS.nuspec'
            $reader = [IO.StreamReader]::new($entry.Open())
            try { [xml]$nuspec = $reader.ReadToEnd() } finally { $reader.Dispose() }
        } finally { $zip.Dispose() }
        $meta = $nuspec.package.metadata
        $meta.id | Should -Be 'QcowPS'
        $meta.version | Should -Be $version
        $meta.description | Should -Not -BeNullOrEmpty
        $meta.tags | Should -Match 'qcow2'
        $meta.projectUrl | Should -Not -BeNullOrEmpty
        "$($meta.licenseUrl)$($meta.license.'#text')" | Should -Not -BeNullOrEmpty
    }

    It 'installs from a local PSResourceGet repository, imports by name in a fresh pwsh with only that module path, and works' {
        $install = @"
`$ErrorActionPreference = 'Stop'
Register-PSResourceRepository -Name QcowPSTestFeed -Uri '$feed' -Trusted
Save-PSResource -Name QcowPS -Repository QcowPSTestFeed -Path '$modules' -TrustRepository -SkipDependencyCheck
"@
        Invoke-ChildPwsh -Environment $isolated -Script $install | Out-Null
        Join-Path $modules "QcowPS/$version/QcowPS.psd1" | Should -Exist

        $image = Join-Path $work 'from-package.qcow2'
        $use = @"
`$ErrorActionPreference = 'Stop'
Import-Module QcowPS
`$m = Get-Module QcowPS
"BASE=`$(`$m.ModuleBase)"
"SYNOPSIS=`$((Get-Help New-QcowImage).Synopsis)"
"ABOUT=`$([bool](Get-Help about_QcowPS | Out-String))"
New-QcowImage -Path '$image' -Size 4MB | Out-Null
Write-QcowBlock -LiteralPath '$image' -Offset 64KB -Data ([byte[]](1..16))
"READ=`$((Read-QcowBlock -LiteralPath '$image' -Offset 64KB -Length 16 -Raw) -join ',')"
"INFO=`$((Get-QcowInfo -LiteralPath '$image').VirtualSize)"
"@
        # Only the scratch module path: the module must come from the package, found by name.
        $lines = Invoke-ChildPwsh -Environment ($isolated + @{ PSModulePath = $modules }) -Script $use
        $values = @{}
        foreach ($l in $lines) { if ($l -match '^(?<k>[A-Z]+)=(?<v>.*)$') { $values[$Matches.k] = $Matches.v } }
        $values['BASE'] | Should -BeLike "$modules*"
        $values['SYNOPSIS'] | Should -BeLike '*qcow2*'
        $values['ABOUT'] | Should -Be 'True'
        $values['READ'] | Should -Be ((1..16) -join ',')
        $values['INFO'] | Should -Be 4MB
        (Get-QemuCheck $image).ExitCode | Should -Be 0
        Get-QemuIoPatternMismatch $image '0 0 64k' | Should -BeNullOrEmpty
    }
}
