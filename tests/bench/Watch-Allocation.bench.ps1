<#
.SYNOPSIS
    Benchmark: Watch-Allocation's engines on an allocation-heavy loop, against the same loop
    untraced and under heaptrack, launch and attach, in one invocation.
.DESCRIPTION
    tests/bench/alloc-bench.c (gcc -O2, no frame pointers) mallocs 16..255 bytes, works on the block,
    frees it, 12 calls deep (about 17 frames per stack); it times its own loop, so start-up and
    attach costs are left out. Two loops: "tight" (no work: the allocator's own cost, ~7 ns) and
    "~200 ns" (about 200 ns of work per allocation). Each figure is the median of -Runs runs, as a
    slowdown against the untraced median of the same invocation.
    Targets (issue 8): agent at most 2x on the ~200 ns loop, below heaptrack's slowdown on every
    loop, sampling (512 KiB) near 1.05x.
#>
param(
    [string] $ModulePath = (Join-Path $PSScriptRoot '../../out/LeakTools/LeakTools.psd1'),
    [int] $Runs = 3,
    [long] $Iterations = 2000000,
    [int] $Depth = 12
)
$ErrorActionPreference = 'Stop'
Import-Module $ModulePath -Force
$moduleDir = Split-Path (Resolve-Path $ModulePath)
$agent = Join-Path $moduleDir 'native/linux-x64/libleaktools-agent.so'
Add-Type -Path (Join-Path $PSScriptRoot 'AllocBench.cs') -ReferencedAssemblies (Join-Path $moduleDir 'LeakTools.Core.dll'), 'System.Collections', 'System.Threading', 'System.Threading.Thread', 'System.Diagnostics.Process', 'System.ComponentModel.Primitives', 'System.Linq' -IgnoreWarnings -WarningAction Ignore

$work = Join-Path ([IO.Path]::GetTempPath()) "leaktools-allocbench-$PID"
$null = New-Item -ItemType Directory -Path $work -Force
$exe = Join-Path $work 'alloc-bench'
& gcc -O2 -o $exe (Join-Path $PSScriptRoot 'alloc-bench.c')
if ($LASTEXITCODE -ne 0) { throw 'gcc failed' }
$haveHeaptrack = [bool](Get-Command heaptrack -ErrorAction Ignore)

function Get-Median([double[]] $Values) { $s = $Values | Sort-Object; $s[[int][math]::Floor(($s.Count - 1) / 2)] }

function Invoke-Launched([string] $Command, [string[]] $Arguments) {
    $out = & $Command @Arguments 2>&1 | Out-String
    $m = [regex]::Match($out, 'RESULT ([0-9.]+)')
    if (-not $m.Success) { throw "no RESULT from $Command $Arguments`n$out" }
    [double]$m.Groups[1].Value
}

# An attach: start detached, attach the engine, "go", read the result, detach.
function Invoke-Attached([int] $Loop, [scriptblock] $Attach, [scriptblock] $Detach) {
    $dir = Join-Path $work "attach-$([guid]::NewGuid().ToString('n').Substring(0, 8))"
    $t = [AllocBenchTarget]::Start($dir, "'$exe' $Iterations $Loop $loopDepth")
    try {
        $engine = & $Attach $t.Pid $dir
        try { $t.Go([TimeSpan]::FromMinutes(10)) }
        finally { & $Detach $engine }
    }
    finally { $t.Dispose() }
}

# name = (work steps, call depth): ~17 frames per stack, and a deep one (~47 frames)
$loops = [ordered]@{ 'tight' = @(0, $Depth); '~200 ns' = @(130, $Depth); 'tight, deep' = @(0, $Depth + 30) }
$rows = [System.Collections.Generic.List[object]]::new()
foreach ($name in $loops.Keys) {
    $loop, $loopDepth = $loops[$name]
    $fixtureArgs = @("$Iterations", "$loop", "$loopDepth", 'now')
    # Interleaved: each round measures every engine once, so a busy machine slows all alike.
    $samples = [ordered]@{}
    function Add-Sample([string] $Key, [double] $Value) { if (-not $samples.Contains($Key)) { $samples[$Key] = [System.Collections.Generic.List[double]]::new() }; $samples[$Key].Add($Value) }
    for ($run = 0; $run -lt $Runs; $run++) {
        Add-Sample 'untraced' (Invoke-Launched $exe $fixtureArgs)
        Add-Sample 'agent, launch' ([AgentBenchLaunch]::Run((Join-Path $work 'launch'), $exe, $fixtureArgs, $agent, 0))
        Add-Sample 'agent, attach' (Invoke-Attached $loop { param($p) [AgentBenchSession]::Attach($p, $agent, 0) } { param($s) $null = $s.Stop(); $s.Dispose() })
        Add-Sample 'agent 512 KiB sampling, launch' ([AgentBenchLaunch]::Run((Join-Path $work 'launch'), $exe, $fixtureArgs, $agent, 524288))
        Add-Sample 'agent 512 KiB sampling, attach' (Invoke-Attached $loop { param($p) [AgentBenchSession]::Attach($p, $agent, 524288) } { param($s) $null = $s.Stop(); $s.Dispose() })
        if ($haveHeaptrack) {
            Push-Location $work
            try {
                Add-Sample 'heaptrack, launch' (Invoke-Launched 'heaptrack' (@($exe) + $fixtureArgs))
                Add-Sample 'heaptrack -p, attach' (Invoke-Attached $loop {
                        param($p, $dir)
                        $log = Join-Path $dir 'heaptrack.log'
                        $null = Start-Process -FilePath heaptrack -ArgumentList '-p', $p -WorkingDirectory $dir -RedirectStandardOutput $log -RedirectStandardError "$log.err" -PassThru
                        $clock = [Diagnostics.Stopwatch]::StartNew()
                        while (-not ((Test-Path $log) -and (Get-Content -Raw $log) -match 'injection finished')) {
                            if ($clock.Elapsed.TotalSeconds -gt 60) { throw "heaptrack -p did not inject: $(Get-Content -Raw $log)" }
                            Start-Sleep -Milliseconds 50
                        }
                    } { param($x) })
            }
            finally { Pop-Location }
        }
    }
    $measure = [ordered]@{}
    foreach ($k in $samples.Keys) { $measure[$k] = Get-Median $samples[$k].ToArray() }
    foreach ($k in $measure.Keys) {
        $rows.Add([pscustomobject]@{ Loop = $name; Run = $k; NsPerIteration = $measure[$k]; Slowdown = $measure[$k] / $measure['untraced']; AddedNs = $measure[$k] - $measure['untraced'] })
    }
}

Write-Host ("Watch-Allocation engines, alloc-bench.c ({0:N0} iterations, median of {1}), slowdown against untraced in the same run:" -f $Iterations, $Runs)
Write-Host ("  (tight and ~200 ns: {0} calls deep, ~17 frames a stack; deep: {1} calls, ~47 frames)" -f $Depth, ($Depth + 30))
foreach ($r in $rows) {
    Write-Host ('  {0,-12} {1,-32} {2,9:N1} ns/iteration  {3,7:N2}x  {4,8:N1} ns added' -f $r.Loop, $r.Run, $r.NsPerIteration, $r.Slowdown, $r.AddedNs)
}
if (-not $haveHeaptrack) { Write-Host '  (heaptrack not installed: its rows are missing)' }
Remove-Item $work -Recurse -Force -ErrorAction Ignore
