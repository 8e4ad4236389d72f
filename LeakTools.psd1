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
        'module/LeakTools.ProcFs.Format.ps1xml'
        'module/LeakTools.StackFrame.Format.ps1xml'
        'module/LeakTools.Symbols.Format.ps1xml'
        'module/LeakTools.Reports.Format.ps1xml'
        'module/LeakTools.Dumps.Format.ps1xml'
        'module/LeakTools.Tracing.Format.ps1xml'
        'module/LeakTools.Monitoring.Format.ps1xml'
        'module/LeakTools.Heap.Format.ps1xml'
    )
    TypesToProcess       = @(
        'module/LeakTools.Types.ps1xml'
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
            Tags         = @('Linux', 'Memory', 'Leak', 'MemoryLeak', 'pmap', 'smaps', 'valgrind', 'memleax', 'coredump', 'PSEdition_Core')
            LicenseUri   = 'https://opensource.org/licenses/MIT'
            ProjectUri   = 'https://github.com/leaktools/leaktools'
            ReleaseNotes = '0.1.0: first release. Process memory (Pss/Uss, pmap -X), symbolizing, allocation tracing (in-process agent or ptrace), valgrind reports, cores and heap scans, scheduled leak monitors. Linux x64, PowerShell 7.4 to 7.6.'
        }
    }
}
