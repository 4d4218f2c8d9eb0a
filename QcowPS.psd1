@{
    RootModule           = 'bin/QcowPS.dll'
    ModuleVersion        = '0.1.0'
    GUID                 = '5b0f7f0e-8d7e-4c52-9a3e-6f1c2f0b7a91'
    Author               = 'QcowPS developers'
    CompanyName          = 'QcowPS'
    Copyright            = '(c) QcowPS developers. MIT License.'
    Description          = 'Create, inspect, read, write, snapshot, check and convert QEMU qcow2 disk images from PowerShell, without QEMU.'
    PowerShellVersion    = '5.1'
    CompatiblePSEditions = @('Desktop', 'Core')
    FormatsToProcess     = @('QcowPS.format.ps1xml')
    CmdletsToExport      = @(
        'Get-QcowInfo'
        'Get-QcowSnapshot'
        'Read-QcowBlock'
        'Get-QcowCluster'
        'Get-QcowTable'
        'New-QcowImage'
        'Write-QcowBlock'
        'New-QcowSnapshot'
        'Remove-QcowSnapshot'
        'Restore-QcowSnapshot'
        'Resize-QcowImage'
        'Test-QcowImage'
        'Repair-QcowImage'
        'Convert-QcowImage'
        'Compare-QcowImage'
        'Get-QcowBitmap'
        'New-QcowBitmap'
        'Remove-QcowBitmap'
        'Clear-QcowBitmap'
        'Enable-QcowBitmap'
        'Disable-QcowBitmap'
        'Merge-QcowBitmap'
        'Get-QcowPartition'
        'New-QcowPartitionTable'
        'Get-QcowFileSystem'
        'Optimize-QcowImage'
        'Start-QcowNbdServer'
        'Get-QcowNbdServer'
        'Stop-QcowNbdServer'
    )
    FunctionsToExport    = @()
    VariablesToExport    = @()
    AliasesToExport      = @()
    PrivateData          = @{
        PSData = @{
            Tags       = @('qcow2', 'qemu', 'disk-image', 'virtualization', 'qed')
            ProjectUri = 'https://example.invalid/qcowps'
            LicenseUri = 'https://opensource.org/licenses/MIT'
        }
    }
}
