<#
.SYNOPSIS
    Benchmark: the cost of Watch-Allocation's ptrace engine to the traced program, in one
    invocation: tests/fixtures/alloc-bench.c untraced, then under Watch-Allocation (launch and
    attach), then under heaptrack (launch and -p attach) and memleax where installed. The program
    times its own phases (idle: no allocation; work: malloc + ~200 ns of work + free; tight:
    malloc + free alone) and prints ns per iteration; ratios are against the untraced run.
    Target (issue 4): under 300x on an allocation loop, no measurable cost while not allocating.
#>
param(
    [string] $ModulePath = (Join-Path $PSScriptRoot '../../out/LeakTools/LeakTools.psd1'),
    [int] $TracedIterations = 20000
)
$ErrorActionPreference = 'Stop'
Import-Module $ModulePath -Force

$work = Join-Path ([IO.Path]::GetTempPath()) "leaktools-bench-watch-$PID"
$null = New-Item -ItemType Directory -Force $work
$exe = Join-Path $work 'alloc-bench'
& gcc -O2 -g -o $exe (Join-Path $PSScriptRoot '../fixtures/alloc-bench.c')
if ($LASTEXITCODE -ne 0) { throw 'gcc failed' }

function Read-Phases([string[]] $Lines) {
    $r = @{}
    foreach ($l in $Lines) { if ($l -match '^(idle|work|tight) ([0-9.]+) ') { $r[$Matches[1]] = [double]$Matches[2] } }
    $r
}

# Untraced: more iterations (the phases are short), the same program and phases.
$results = [ordered]@{}
$results['untraced'] = Read-Phases (& $exe 0 200000 1000000 10000000)
$n = "$TracedIterations"

# Watch-Allocation, launch mode: traced from the first allocation.
$null = Watch-Allocation -FilePath $exe -ArgumentList 0, 200000, $n, $n -Expire 30 -InformationVariable said 6>$null
$results['Watch-Allocation (launch)'] = Read-Phases ([string[]]$said.MessageData)

# Watch-Allocation, attach: the program waits a second, then runs.
$log = Join-Path $work 'attach.log'
$p = Start-Process $exe -ArgumentList 1.5, 200000, $n, $n -PassThru -RedirectStandardOutput $log
$null = Watch-Allocation -Id $p.Id -Expire 30
$p.WaitForExit()
$results['Watch-Allocation (attach)'] = Read-Phases (Get-Content $log)

if (Get-Command heaptrack -ErrorAction Ignore) {
    Push-Location $work # heaptrack -p writes its file into the current folder whatever -o says
    $out = & heaptrack -o (Join-Path $work 'ht-launch') $exe 0 200000 $n $n 2>&1
    $results['heaptrack (launch)'] = Read-Phases ([string[]]$out)
    $log2 = Join-Path $work 'attach2.log'
    $p = Start-Process $exe -ArgumentList 4, 200000, $n, $n -PassThru -RedirectStandardOutput $log2
    Start-Sleep -Milliseconds 300
    $null = & heaptrack -p $p.Id -o (Join-Path $work 'ht-attach') 2>&1
    $p.WaitForExit()
    $results['heaptrack -p (attach)'] = Read-Phases (Get-Content $log2)
    Pop-Location
}
else { Write-Host 'heaptrack is not installed: skipped' }
if (Get-Command memleax -ErrorAction Ignore) {
    $log3 = Join-Path $work 'attach3.log'
    $p = Start-Process $exe -ArgumentList 1.5, 200000, $n, $n -PassThru -RedirectStandardOutput $log3
    Start-Sleep -Milliseconds 300
    $null = & memleax -e 30 $p.Id 2>&1
    $p.WaitForExit()
    $results['memleax (attach)'] = Read-Phases (Get-Content $log3)
}
else { Write-Host 'memleax is not installed: skipped' }

$base = $results['untraced']
$rows = foreach ($k in $results.Keys) {
    $r = $results[$k]
    [pscustomobject]@{
        Run          = $k
        'idle ns'    = $r.idle
        'idle x'     = if ($r.idle) { '{0:N2}' -f ($r.idle / $base.idle) }
        'work ns'    = $r.work
        'work x'     = if ($r.work) { '{0:N0}' -f ($r.work / $base.work) }
        'tight ns'   = $r.tight
        'tight x'    = if ($r.tight) { '{0:N0}' -f ($r.tight / $base.tight) }
    }
}
$rows | Format-Table -AutoSize | Out-String -Width 200 | Write-Host
Write-Host 'ns = the program''s own time per iteration of each phase; x = slowdown against the untraced run above.'
Remove-Item -Recurse -Force $work -ErrorAction Ignore
exit 0
