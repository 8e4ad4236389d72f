@{
    RootModule           = 'LeakTools.dll'
    ModuleVersion        = '0.1.0'
    GUID                 = '5b0f4c53-8f3e-4a61-9a43-2f6c1c7e4d21'
    Author               = 'LeakTools'
    CompanyName          = 'LeakTools'
    Copyright            = '(c) LeakTools contributors. MIT License.'
    Description          = 'Hunts memory leaks in native Linux processes: Pss/Uss from smaps, pmap -X as objects, allocation tracing, cores, symbolizing and trend monitoring.'
    PowerShellVersion    = '7.4'
    CompatiblePSEditions = @('Core')
    FormatsToProcess     = @(
        'LeakTools.ProcFs.Format.ps1xml'
        'LeakTools.StackFrame.Format.ps1xml'
        'LeakTools.Symbols.Format.ps1xml'
        'LeakTools.Reports.Format.ps1xml'
        'LeakTools.Dumps.Format.ps1xml'
        'LeakTools.Tracing.Format.ps1xml'
        'LeakTools.Monitoring.Format.ps1xml'
        'LeakTools.Heap.Format.ps1xml'
    )
    TypesToProcess       = @(
        'LeakTools.Types.ps1xml'
    )
    CmdletsToExport      = @(
        'Get-ProcessPss'
        'Get-ProcessMemoryMap'
        'Get-SystemMemory'
        'Resolve-Address'
        'Get-ElfSymbol'
        'Invoke-Valgrind'
        'Import-ValgrindLog'
        'Invoke-CoreCapture'
        'Get-CoreDump'
        'Watch-Allocation'
        'Watch-ProcessMemory'
        'Measure-MemoryTrend'
        'Get-MemoryHistory'
        'Invoke-LeakMonitor'
        'Register-LeakMonitor'
        'Get-LeakMonitor'
        'Unregister-LeakMonitor'
        'Find-LeakedAllocation'
        'Get-HeapSummary'
    )
    FunctionsToExport    = @()
    VariablesToExport    = @()
    AliasesToExport      = @()
    PrivateData          = @{
        PSData = @{
            Tags       = @('Linux', 'Memory', 'Leak', 'pmap', 'smaps', 'valgrind', 'memleax')
            LicenseUri = 'https://opensource.org/licenses/MIT'
        }
    }
}
