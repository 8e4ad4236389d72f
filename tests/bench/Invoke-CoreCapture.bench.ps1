<#
.SYNOPSIS
    Benchmark: Invoke-CoreCapture -Method Snapshot against gcore (gdb) on the same process, a
    fixture with five threads and -HeapMiB of touched heap. For each tool: total wall time, the
    target's freeze (the longest gap of the fixture's own heartbeat thread, which ticks every
    0.2 ms, so both tools are measured the same way from inside the target), and core size
    (apparent and allocated). Also the Direct strategy (write while stopped) for comparison.
    Targets (issue 5): total time at most gcore's, freeze at most half of gcore's.
#>
param(
    [string] $ModulePath = (Join-Path $PSScriptRoot '../../out/LeakTools/LeakTools.psd1'),
    [int] $HeapMiB = 300,
    [int] $Rounds = 3
)
$ErrorActionPreference = 'Stop'
Import-Module $ModulePath -Force
if (-not (Get-Command gcore -ErrorAction Ignore)) { Write-Host 'gcore is not installed: no baseline, skipped.'; exit 0 }

$work = Join-Path ([IO.Path]::GetTempPath()) "leaktools-bench-cores-$PID"
$null = New-Item -ItemType Directory -Force $work
$exe = Join-Path $work 'core-threads'
& gcc -O0 -g -o $exe (Join-Path $PSScriptRoot '../fixtures/core-threads.c') -lpthread
if ($LASTEXITCODE -ne 0) { throw 'gcc failed' }

$psi = [System.Diagnostics.ProcessStartInfo]::new($exe, "$HeapMiB")
$psi.RedirectStandardInput = $true
$psi.RedirectStandardOutput = $true
$fixture = [System.Diagnostics.Process]::Start($psi)
$null = $fixture.StandardOutput.ReadLine()

function Get-Gap {
    $fixture.StandardInput.WriteLine('gap')
    [double]($fixture.StandardOutput.ReadLine() -replace '^GAP us=', '') / 1000
}
function Get-CoreSize([string] $Path) {
    $blocks = [long](& stat -c '%b' $Path)
    [pscustomobject]@{ Apparent = (Get-Item $Path).Length; Allocated = $blocks * 512 }
}
function Measure-Tool([string] $Tool, [scriptblock] $Run) {
    $null = Get-Gap
    $sw = [Diagnostics.Stopwatch]::StartNew()
    $result = & $Run
    $total = $sw.Elapsed.TotalMilliseconds
    Start-Sleep -Milliseconds 50
    $gap = Get-Gap
    $sizes = Get-CoreSize $result.Path
    Remove-Item $result.Path
    [pscustomobject]@{ Tool = $Tool; TotalMs = $total; FreezeMs = $gap; ReportedFreezeMs = $result.Freeze; Apparent = $sizes.Apparent; Allocated = $sizes.Allocated }
}

try {
    # First call of the session: pays the helper start and JIT; reported on its own.
    $cold = Measure-Tool 'LeakTools (first call)' {
        $d = Invoke-CoreCapture -Id $fixture.Id -Destination $work
        [pscustomobject]@{ Path = $d.Path; Freeze = $d.FreezeTime.TotalMilliseconds }
    }
    $rows = [System.Collections.Generic.List[object]]::new()
    $rows.Add($cold)
    for ($i = 0; $i -lt $Rounds; $i++) {
        $rows.Add((Measure-Tool 'gcore' {
            $base = Join-Path $work 'gcore'
            & gcore -o $base $fixture.Id *> $null
            if ($LASTEXITCODE -ne 0) { throw 'gcore failed' }
            [pscustomobject]@{ Path = "$base.$($fixture.Id)"; Freeze = $null }
        }))
        $rows.Add((Measure-Tool 'LeakTools Snapshot' {
            $d = Invoke-CoreCapture -Id $fixture.Id -Destination $work
            [pscustomobject]@{ Path = $d.Path; Freeze = $d.FreezeTime.TotalMilliseconds }
        }))
        $rows.Add((Measure-Tool 'LeakTools Direct' {
            $request = [LeakTools.Core.Hosting.SnapshotRequest]@{ Pid = $fixture.Id; Destination = $work; Strategy = 'Direct' }
            $dump = $null
            foreach ($r in [LeakTools.Core.Hosting.HelperClient]::Shared.Run('core.snapshot', $request, [Threading.CancellationToken]::None)) {
                if ("$($r.Kind)" -eq 'Item') { $dump = $r.Data }
                if ("$($r.Kind)" -eq 'Done' -and $r.Failure) { throw $r.Failure.Message }
            }
            [pscustomobject]@{ Path = $dump.GetProperty('path').GetString(); Freeze = [timespan]::Parse($dump.GetProperty('freezeTime').GetString()).TotalMilliseconds }
        }))
    }
}
finally {
    $fixture.StandardInput.Close()
    $fixture.WaitForExit(10000) | Out-Null
    Remove-Item -Recurse -Force $work -ErrorAction Ignore
}

function Median([double[]] $v) { $s = $v | Sort-Object; $s[[int][Math]::Floor(($s.Count - 1) / 2)] }
$summary = $rows | Group-Object Tool | ForEach-Object {
    [pscustomobject]@{
        Tool            = $_.Name
        Runs            = $_.Count
        'Total(ms)'     = [Math]::Round((Median $_.Group.TotalMs), 0)
        'Freeze(ms)'    = [Math]::Round((Median $_.Group.FreezeMs), 1)
        'Reported(ms)'  = if ($_.Group[0].ReportedFreezeMs) { [Math]::Round((Median $_.Group.ReportedFreezeMs), 1) } else { '' }
        'Size(MiB)'     = [Math]::Round((Median $_.Group.Apparent) / 1MB, 1)
        'OnDisk(MiB)'   = [Math]::Round((Median $_.Group.Allocated) / 1MB, 1)
    }
}
Write-Host "Core capture of a $HeapMiB MiB, 5-thread process; medians of $Rounds rounds (freeze = the target's longest heartbeat gap)"
$summary | Format-Table -AutoSize | Out-String -Width 160 | Write-Host
$g = $summary | Where-Object Tool -eq 'gcore'
$l = $summary | Where-Object Tool -eq 'LeakTools Snapshot'
$totalRatio = $l.'Total(ms)' / $g.'Total(ms)'
$freezeRatio = $l.'Freeze(ms)' / $g.'Freeze(ms)'
Write-Host ('Snapshot / gcore: total {0:N2}x (target <= 1), freeze {1:N2}x (target <= 0.5), on-disk size {2:N2}x' -f $totalRatio, $freezeRatio, ($l.'OnDisk(MiB)' / $g.'OnDisk(MiB)'))
exit 0
