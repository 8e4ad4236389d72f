<#
.SYNOPSIS
    Benchmark: the cost of Watch-Allocation's engines to the traced program, in one invocation:
    tests/fixtures/alloc-bench.c untraced, under the agent (every allocation, and 512 KiB
    sampling), under the breakpoint engine, under heaptrack (launch and -p attach) and memleax
    where installed, each launched and attached.
.DESCRIPTION
    The program (gcc -O2, no frame pointers) times its own phases and prints ns per iteration, so
    start-up and attach costs stay out: idle (no allocation: any cost here is the tracer's
    presence), work (malloc + ~200 ns of work on the block + free), tight (malloc + free alone, the
    worst case). The phases run 12 calls deep (about 17 frames per stack, as in the research
    figures); "tight, 42 deep" (about 47 frames) shows the cost of depth. Slowdowns are against
    the untraced run's median in the same invocation; fast runs are the median of -Runs.
    Targets: issue 8 (agent) at most 2x on the work loop, below heaptrack on every loop, sampling
    near 1.05x; issue 4 (breakpoint) under 300x on an allocation loop, no cost while idle. The
    agent's launch mode checks every free (a stack per free, for double and invalid frees); the
    "without free checks" row (LEAKTOOLS_FREE_CHECKS=0) is its cost without them.
#>
param(
    [string] $ModulePath = (Join-Path $PSScriptRoot '../../out/LeakTools/LeakTools.psd1'),
    [int] $Runs = 3,
    [int] $BreakpointIterations = 20000
)
$ErrorActionPreference = 'Stop'
Import-Module $ModulePath -Force

$work = Join-Path ([IO.Path]::GetTempPath()) "leaktools-bench-watch-$PID"
$null = New-Item -ItemType Directory -Force $work
$exe = Join-Path $work 'alloc-bench'
& gcc -O2 -g -o $exe (Join-Path $PSScriptRoot '../fixtures/alloc-bench.c')
if ($LASTEXITCODE -ne 0) { throw 'gcc failed' }
$haveHeaptrack = [bool](Get-Command heaptrack -ErrorAction Ignore)
$haveMemleax = [bool](Get-Command memleax -ErrorAction Ignore)

function Read-PhaseTiming([string[]] $Lines) {
    $r = @{}
    foreach ($l in $Lines) { if ($l -match '^(idle|work|tight) ([0-9.]+) ') { $r[$Matches[1]] = [double]$Matches[2] } }
    if ($r.Count -eq 0) { throw "no phase lines in: $($Lines -join "`n")" }
    $r
}

# Arguments of the program: wait, idle, work, tight iterations, depth.
function Get-FixtureArgumentList([double] $Wait, [long] $Count, [int] $Depth) { @("$Wait", '20000', "$Count", "$Count", "$Depth") }

function Invoke-Untraced([long] $Count, [int] $Depth) { Read-PhaseTiming (& $exe @(Get-FixtureArgumentList -Wait 0 -Count $Count -Depth $Depth)) }

function Invoke-WatchLaunch([long] $Count, [int] $Depth, [hashtable] $Engine, [switch] $NoFreeChecks) {
    if ($NoFreeChecks) { $env:LEAKTOOLS_FREE_CHECKS = '0' }   # the launched program's environment tells the agent
    try {
        $null = Watch-Allocation -FilePath $exe -ArgumentList (Get-FixtureArgumentList -Wait 0 -Count $Count -Depth $Depth) -Expire 30 @Engine -InformationVariable said -WarningAction Ignore 6>$null
    }
    finally { Remove-Item Env:LEAKTOOLS_FREE_CHECKS -ErrorAction Ignore }
    Read-PhaseTiming ([string[]]$said.MessageData)
}

function Invoke-WatchAttach([long] $Count, [int] $Depth, [hashtable] $Engine) {
    $log = Join-Path $work "attach-$([guid]::NewGuid().ToString('n').Substring(0, 8)).log"
    $p = Start-Process $exe -ArgumentList (Get-FixtureArgumentList -Wait 1.5 -Count $Count -Depth $Depth) -PassThru -RedirectStandardOutput $log
    $null = Watch-Allocation -Id $p.Id -Expire 30 @Engine -WarningAction Ignore   # until the program exits
    $p.WaitForExit()
    Read-PhaseTiming (Get-Content $log)
}

function Invoke-HeaptrackLaunch([long] $Count, [int] $Depth) {
    Push-Location $work # heaptrack writes its file into the current folder
    try { Read-PhaseTiming ([string[]](& heaptrack -o (Join-Path $work 'ht-launch') $exe @(Get-FixtureArgumentList -Wait 0 -Count $Count -Depth $Depth) 2>&1)) }
    finally { Pop-Location }
}

function Invoke-HeaptrackAttach([long] $Count, [int] $Depth) {
    Push-Location $work
    try {
        $log = Join-Path $work 'ht-attach.log'
        $p = Start-Process $exe -ArgumentList (Get-FixtureArgumentList -Wait 4 -Count $Count -Depth $Depth) -PassThru -RedirectStandardOutput $log
        Start-Sleep -Milliseconds 300
        $null = & heaptrack -p $p.Id -o (Join-Path $work 'ht-attach') 2>&1   # gdb injects; returns when the program exits
        $p.WaitForExit()
        Read-PhaseTiming (Get-Content $log)
    }
    finally { Pop-Location }
}

function Invoke-Memleax([long] $Count, [int] $Depth) {
    $log = Join-Path $work 'memleax.log'
    $p = Start-Process $exe -ArgumentList (Get-FixtureArgumentList -Wait 1.5 -Count $Count -Depth $Depth) -PassThru -RedirectStandardOutput $log
    Start-Sleep -Milliseconds 300
    $null = & memleax -e 30 $p.Id 2>&1
    $p.WaitForExit()
    Read-PhaseTiming (Get-Content $log)
}

function Get-Median([double[]] $Values) { $s = @($Values | Sort-Object); $s[[int][math]::Floor(($s.Count - 1) / 2)] }

# Runs each measurement $Times times, interleaved round by round (a busy machine slows all alike);
# returns run -> phase -> median ns.
function Measure-All([System.Collections.Specialized.OrderedDictionary] $Plan, [int] $Times) {
    $samples = [ordered]@{}
    for ($i = 0; $i -lt $Times; $i++) {
        foreach ($name in $Plan.Keys) {
            if ($i -gt 0 -and $Plan[$name].Once) { continue }
            $r = & $Plan[$name].Run
            if (-not $samples.Contains($name)) { $samples[$name] = @{ idle = @(); work = @(); tight = @() } }
            foreach ($phase in 'idle', 'work', 'tight') { if ($r.ContainsKey($phase)) { $samples[$name][$phase] += $r[$phase] } }
        }
    }
    $medians = [ordered]@{}
    foreach ($name in $samples.Keys) {
        $medians[$name] = @{}
        foreach ($phase in 'idle', 'work', 'tight') { if ($samples[$name][$phase].Count) { $medians[$name][$phase] = Get-Median $samples[$name][$phase] } }
    }
    $medians
}

$agent = @{ Engine = 'Agent' }
$sampled = @{ Engine = 'Agent'; SampleInterval = 512KB }
$breakpoint = @{ Engine = 'Breakpoint' }
$n = 1000000
$plan = [ordered]@{
    'untraced'                        = @{ Run = { Invoke-Untraced 5000000 12 } }
    'agent, launch'                   = @{ Run = { Invoke-WatchLaunch -Count $n -Depth 12 -Engine $agent } }
    'agent without free checks, launch' = @{ Run = { Invoke-WatchLaunch -Count $n -Depth 12 -Engine $agent -NoFreeChecks } }
    'agent, attach'                   = @{ Run = { Invoke-WatchAttach -Count $n -Depth 12 -Engine $agent } }
    'agent 512 KiB sampling, launch'  = @{ Run = { Invoke-WatchLaunch -Count $n -Depth 12 -Engine $sampled } }
    'agent 512 KiB sampling, attach'  = @{ Run = { Invoke-WatchAttach -Count $n -Depth 12 -Engine $sampled } }
    'breakpoint, launch'              = @{ Run = { Invoke-WatchLaunch -Count $BreakpointIterations -Depth 12 -Engine $breakpoint }; Once = $true }
    'breakpoint, attach'              = @{ Run = { Invoke-WatchAttach -Count $BreakpointIterations -Depth 12 -Engine $breakpoint }; Once = $true }
}
if ($haveHeaptrack) {
    $plan['heaptrack, launch'] = @{ Run = { Invoke-HeaptrackLaunch 300000 12 } }
    $plan['heaptrack -p, attach'] = @{ Run = { Invoke-HeaptrackAttach 300000 12 } }
}
if ($haveMemleax) { $plan['memleax, attach'] = @{ Run = { Invoke-Memleax 2000 12 }; Once = $true } }
$main = Measure-All $plan $Runs

$deepPlan = [ordered]@{
    'untraced'      = @{ Run = { Invoke-Untraced 5000000 42 } }
    'agent, launch' = @{ Run = { Invoke-WatchLaunch -Count $n -Depth 42 -Engine $agent } }
    'agent without free checks, launch' = @{ Run = { Invoke-WatchLaunch -Count $n -Depth 42 -Engine $agent -NoFreeChecks } }
}
if ($haveHeaptrack) { $deepPlan['heaptrack, launch'] = @{ Run = { Invoke-HeaptrackLaunch 300000 42 } } }
$deep = Measure-All $deepPlan $Runs

$base = $main['untraced']
$rows = foreach ($k in $main.Keys) {
    $r = $main[$k]
    [pscustomobject]@{
        Run        = $k
        'idle ns'  = '{0:N1}' -f $r.idle
        'idle x'   = '{0:N2}' -f ($r.idle / $base.idle)
        'work ns'  = '{0:N1}' -f $r.work
        'work x'   = '{0:N2}' -f ($r.work / $base.work)
        'tight ns' = '{0:N1}' -f $r.tight
        'tight x'  = '{0:N1}' -f ($r.tight / $base.tight)
    }
}
Write-Host "alloc-bench.c phases 12 calls deep (~17 frames a stack); median of $Runs (breakpoint and memleax: one run):"
$rows | Format-Table -AutoSize | Out-String -Width 200 | Write-Host
$deepBase = $deep['untraced']
Write-Host 'tight loop 42 calls deep (~47 frames a stack):'
foreach ($k in $deep.Keys) {
    Write-Host ('  {0,-34} {1,8:N1} ns  {2,6:N1}x  ({3:N1} ns added per malloc+free)' -f $k, $deep[$k].tight, ($deep[$k].tight / $deepBase.tight), ($deep[$k].tight - $deepBase.tight))
}
Write-Host 'ns = the program''s own time per iteration of each phase; x = slowdown against the untraced run of the same invocation.'
if (-not $haveHeaptrack) { Write-Host 'heaptrack is not installed: its rows are missing.' }
if (-not $haveMemleax) { Write-Host 'memleax is not installed: its row is missing.' }
Remove-Item -Recurse -Force $work -ErrorAction Ignore
exit 0
