<#
.SYNOPSIS
    Benchmark: the per-sample cost of Watch-ProcessMemory, with an interval so short that it never
    sleeps, on one process (by -Id and by -Name, which re-resolves the name among all processes at
    every tick to follow restarts) and on every process. Baseline in the same run: reading the same
    /proc/PID/smaps_rollup files raw (open/read/close into a reused buffer, no parsing).
    Target (issue 6): under 2 ms per sample for one process.
    By name, pids already seen are not read again at every tick (only re-checked every 15-30 s,
    about 10 status+cmdline reads a second on 200 processes); new pids are read at once.
#>
param(
    [string] $ModulePath = (Join-Path $PSScriptRoot '../../out/LeakTools/LeakTools.psd1'),
    [int] $ExtraProcesses = 200,
    [int] $Ticks = 2000,
    [int] $AllTicks = 20
)
$ErrorActionPreference = 'Stop'
Import-Module $ModulePath -Force

Add-Type -CompilerOptions '/unsafe' -Path (Join-Path $PSScriptRoot 'RawRollup.cs')

$extra = @()
for ($i = 0; $i -lt $ExtraProcesses; $i++) { $extra += Start-Process -FilePath sleep -ArgumentList 600 -PassThru }
$target = Start-Process -FilePath sleep -ArgumentList 600 -PassThru   # the one process watched
$never = [timespan]::FromTicks(1)                                     # the clock is always due
try {
    Start-Sleep -Milliseconds 300
    $sw = [System.Diagnostics.Stopwatch]::new()
    function Measure-Millisecond([scriptblock] $Block) { $sw.Restart(); & $Block; $sw.Stop(); $sw.Elapsed.TotalMilliseconds }

    # warm up
    $null = Watch-ProcessMemory -Id $target.Id -Interval $never -Count 50
    $null = Watch-ProcessMemory sleep -Interval $never -Count 2
    for ($i = 0; $i -lt 200; $i++) { $null = [RawRollup]::ReadOne($target.Id) }

    $rawOne = (Measure-Millisecond { for ($i = 0; $i -lt $Ticks; $i++) { $null = [RawRollup]::ReadOne($target.Id) } }) / $Ticks
    $byId = (Measure-Millisecond { Watch-ProcessMemory -Id $target.Id -Interval $never -Count $Ticks | Out-Null }) / $Ticks
    $nameTicks = [math]::Max(20, $Ticks / 20)
    $name = "leaktools-bench-$PID"
    # one process with a unique name among ~200 others: copy sleep under a new name
    $copy = Join-Path ([IO.Path]::GetTempPath()) $name
    Copy-Item (Get-Command sleep).Source $copy
    $named = Start-Process -FilePath $copy -ArgumentList 600 -PassThru
    Start-Sleep -Milliseconds 200
    $byName = (Measure-Millisecond { Watch-ProcessMemory $name -Interval $never -Count $nameTicks | Out-Null }) / $nameTicks

    $processes = @(Get-ProcessPss -WarningAction Ignore).Count
    $rawAll = (Measure-Millisecond { for ($i = 0; $i -lt $AllTicks; $i++) { $null = [RawRollup]::ReadAll() } }) / $AllTicks
    $all = (Measure-Millisecond { Watch-ProcessMemory -Interval $never -Count $AllTicks -WarningAction Ignore | Out-Null }) / $AllTicks

    Write-Host ('Watch-ProcessMemory, per sample (a tick that never sleeps), {0} processes on the machine' -f $processes)
    Write-Host ('  one process, raw smaps_rollup read (baseline): {0,8:N3} ms' -f $rawOne)
    Write-Host ('  one process by -Id                           : {0,8:N3} ms  ({1:N1}x the raw read; target < 2 ms)' -f $byId, ($byId / $rawOne))
    Write-Host ('  one process by -Name (re-resolved every tick): {0,8:N3} ms  ({1:N1}x the raw read)' -f $byName, ($byName / $rawOne))
    Write-Host ('  all processes, raw read per tick (baseline)  : {0,8:N2} ms  ({1:N1} us/process)' -f $rawAll, (1000 * $rawAll / $processes))
    Write-Host ('  all processes, Watch-ProcessMemory per tick  : {0,8:N2} ms  ({1:N1} us/process, {2:N2}x the raw read)' -f $all, (1000 * $all / $processes), ($all / $rawAll))
}
finally {
    $extra + $target + $named | Where-Object { $_ } | Stop-Process -ErrorAction Ignore
    if ($copy) { Remove-Item $copy -ErrorAction Ignore }
}
exit 0
