<#
.SYNOPSIS
    Benchmark: Get-ProcessPss over every process against reading every /proc/PID/smaps_rollup raw
    (open/read/close into a reused buffer, no parsing) in the same process. Prints the ratio.
    Target (issue 2): at most 2x the raw read.
#>
param(
    [string] $ModulePath = (Join-Path $PSScriptRoot '../../out/LeakTools/LeakTools.psd1'),
    [int] $ExtraProcesses = 200,
    [int] $Rounds = 25
)
$ErrorActionPreference = 'Stop'
Import-Module $ModulePath -Force

Add-Type -CompilerOptions '/unsafe' -Path (Join-Path $PSScriptRoot 'RawRollup.cs')

# More processes make the figure steadier and closer to a real server (hundreds of processes).
$extra = @()
for ($i = 0; $i -lt $ExtraProcesses; $i++) {
    $extra += Start-Process -FilePath sleep -ArgumentList 600 -PassThru
}
try {
    Start-Sleep -Milliseconds 300
    $count = @(Get-ProcessPss -WarningAction Ignore).Count
    $sw = [System.Diagnostics.Stopwatch]::new()
    $raw = [System.Collections.Generic.List[double]]::new()
    $ours = [System.Collections.Generic.List[double]]::new()
    for ($w = 0; $w -lt 3; $w++) { $null = [RawRollup]::ReadAll(); $null = Get-ProcessPss -WarningAction Ignore }
    for ($r = 0; $r -lt $Rounds; $r++) {
        $sw.Restart(); $null = [RawRollup]::ReadAll(); $sw.Stop(); $raw.Add($sw.Elapsed.TotalMilliseconds)
        $sw.Restart(); $null = Get-ProcessPss -WarningAction Ignore; $sw.Stop(); $ours.Add($sw.Elapsed.TotalMilliseconds)
    }
    $median = { param($list) $s = @($list | Sort-Object); $s[[int][math]::Floor($s.Count / 2)] }
    $rawMs = & $median $raw
    $oursMs = & $median $ours
    $ratio = $oursMs / $rawMs
    Write-Host ('Get-ProcessPss over {0} processes ({1} rounds, medians)' -f $count, $Rounds)
    Write-Host ('  raw smaps_rollup read (baseline): {0,8:N2} ms  ({1:N1} us/process)' -f $rawMs, (1000 * $rawMs / $count))
    Write-Host ('  Get-ProcessPss                  : {0,8:N2} ms  ({1:N1} us/process)' -f $oursMs, (1000 * $oursMs / $count))
    Write-Host ('  ratio                           : {0,8:N2}x  (target <= 2x)' -f $ratio)
}
finally {
    $extra | Stop-Process -ErrorAction Ignore
}
exit 0
