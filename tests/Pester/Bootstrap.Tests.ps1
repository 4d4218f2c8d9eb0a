# Proves that build/test.ps1 restored Pester from NuGet and runs the suites under the pinned
# version in its child pwsh.
Describe 'Pester bootstrap' {
    It 'runs under Pester 5.7.1' {
        $pester = @(Get-Module -Name Pester)
        $pester | Should -HaveCount 1
        $pester[0].Version | Should -Be ([version]'5.7.1')
    }
}
