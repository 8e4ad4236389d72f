<#
.SYNOPSIS
    Benchmark (issue 16): LeakTools cold, as an operator meets it, against each figure's baseline in
    the same invocation, several interleaved runs, medians and ratios:
      a) pwsh -c 'Import-Module LeakTools; Get-ProcessPss -Id $PID' against a bare pwsh -c 1
         (pwsh's own host: the PowerShell tool's pwsh.dll run by dotnet, as an installed pwsh runs)
      b) the first Invoke-CoreCapture -Method Snapshot of a fresh session (3 threads, -HeapMiB of
         heap) against gcore, and the target's freeze (its heartbeat thread's longest gap)
      c) Resolve-Address on -Count libc addresses, first and second call of a fresh session, against
         addr2line -f -C -i; with the on-disk index cache empty, then warm (a second fresh session)
      d) -Engine Breakpoint on the work loop of alloc-bench.c against the untraced loop
      e) -Engine Agent on that loop (launched, and attached to a process asleep before its loop)
         against the untraced loop, and heaptrack -p
    Plus where the cold time goes: pwsh start, Import-Module, first command, JIT (methods and ms,
    System.Runtime.JitInfo), the helper's start (host.echo) and the rest of the first snapshot.
    Targets: a <= 1.10x, b first call <= gcore and freeze no longer than before, c first >= 1.5x and
    second >= 3x addr2line's speed, d < 150x, e <= 1.5x. Figures under load are noisy: compare only
    ratios of one invocation.
.PARAMETER Part
    Internal: one fresh-session measurement, run by this script in a child pwsh; prints one JSON line.
#>
param(
    [string] $ModulePath = (Join-Path $PSScriptRoot '../../out/LeakTools/LeakTools.psd1'),
    [int] $Rounds = 5,
    [int] $HeapMiB = 200,
    [int] $Count = 50000,
    [int] $BreakpointIterations = 20000,
    [ValidateSet('', 'Import', 'Snapshot', 'Symbols')]
    [string] $Part = '',
    [string] $Work = '',
    [int] $TargetPid = 0
)
$ErrorActionPreference = 'Stop'
# No cmdlet from another module before the measured import (its autoload would pre-pay the module machinery).
$ModulePath = [IO.Path]::GetFullPath($ModulePath)

function Get-JitState {
    [pscustomobject]@{ Methods = [System.Runtime.JitInfo]::GetCompiledMethodCount($false); Ms = [System.Runtime.JitInfo]::GetCompilationTime($false).TotalMilliseconds }
}
function Get-JitDelta($Before) {
    $now = Get-JitState
    [pscustomobject]@{ Methods = $now.Methods - $Before.Methods; Ms = [math]::Round($now.Ms - $Before.Ms, 1) }
}

# ---- the parts that run in a fresh child pwsh -------------------------------------------------
if ($Part) {
    $started = [System.Diagnostics.Process]::GetCurrentProcess().StartTime.ToUniversalTime()
    $sinceStart = ([datetime]::UtcNow - $started).TotalMilliseconds
    $jit0 = Get-JitState
    $sw = [System.Diagnostics.Stopwatch]::StartNew()
    Import-Module $ModulePath
    $importMs = $sw.Elapsed.TotalMilliseconds
    $jitImport = Get-JitDelta $jit0
    $out = [ordered]@{ SinceStartMs = $sinceStart; ImportMs = $importMs; ImportJit = $jitImport; Assemblies = @([AppDomain]::CurrentDomain.GetAssemblies()).Count }
    switch ($Part) {
        'Import' {
            $jit1 = Get-JitState
            $sw.Restart()
            $null = Get-ProcessPss -Id $PID
            $out.FirstCommandMs = $sw.Elapsed.TotalMilliseconds
            $out.FirstCommandJit = Get-JitDelta $jit1
        }
        'Symbols' {
            $lines = [string[]](Get-Content (Join-Path $Work 'libc-list.txt'))
            $jit1 = Get-JitState
            $sw.Restart()
            $first = @(Resolve-Address -Path '/usr/lib/x86_64-linux-gnu/libc.so.6' -Address $lines)
            $out.FirstMs = $sw.Elapsed.TotalMilliseconds
            $out.FirstJit = Get-JitDelta $jit1
            $sw.Restart()
            $null = Resolve-Address -Path '/usr/lib/x86_64-linux-gnu/libc.so.6' -Address $lines
            $out.SecondMs = $sw.Elapsed.TotalMilliseconds
            $out.Named = @($first | Where-Object Function).Count
        }
        'Snapshot' {
            # The breakdown run asks for the helper first (host.echo), so its start is timed alone.
            if ($env:LEAKTOOLS_BENCH_HELPER_FIRST) {
                $sw.Restart()
                foreach ($r in [LeakTools.Core.Hosting.HelperClient]::Shared.Run('host.echo', @{ x = 1 }, [Threading.CancellationToken]::None)) { }
                $out.HelperStartMs = $sw.Elapsed.TotalMilliseconds
            }
            $jit1 = Get-JitState
            $sw.Restart()
            $dump = Invoke-CoreCapture -Id $TargetPid -Method Snapshot -Destination $Work
            $out.FirstMs = $sw.Elapsed.TotalMilliseconds
            $out.FirstJit = Get-JitDelta $jit1
            $out.ReportedFreezeMs = $dump.FreezeTime.TotalMilliseconds
            Remove-Item $dump.Path
        }
    }
    $out | ConvertTo-Json -Compress -Depth 3
    exit 0
}

# ---- the driver ---------------------------------------------------------------------------------
# pwsh's own host, as an installed pwsh runs: the running pwsh.dll under dotnet, or the pwsh binary.
$exe = [Environment]::ProcessPath
$pwsh = if ((Split-Path $exe -Leaf) -like 'dotnet*') { @($exe, (Join-Path $PSHOME 'pwsh.dll')) } else { @($exe) }
$pwshRest = @($pwsh | Select-Object -Skip 1)
$moduleRoot = Split-Path (Split-Path $ModulePath)   # the folder holding LeakTools/, for Import-Module LeakTools

$work = Join-Path ([IO.Path]::GetTempPath()) "leaktools-bench-cold-$PID"
$null = New-Item -ItemType Directory -Force $work
function Get-Median([double[]] $Values) { $s = @($Values | Sort-Object); $s[[int][math]::Floor(($s.Count - 1) / 2)] }
function Measure-Millisecond([scriptblock] $Run) { $sw = [Diagnostics.Stopwatch]::StartNew(); $null = & $Run; $sw.Elapsed.TotalMilliseconds }
function Invoke-Part([string] $Name, [hashtable] $Environment = @{}, [int] $TargetPid = 0) {
    $saved = @{}
    foreach ($k in $Environment.Keys) { $saved[$k] = [Environment]::GetEnvironmentVariable($k); [Environment]::SetEnvironmentVariable($k, $Environment[$k]) }
    try {
        $text = & $pwsh[0] @pwshRest -NoProfile -NonInteractive -File $PSCommandPath -Part $Name -ModulePath $ModulePath -Work $work -TargetPid $TargetPid
        if ($LASTEXITCODE -ne 0) { throw "part $Name failed: $text" }
        ($text | Select-Object -Last 1) | ConvertFrom-Json
    }
    finally { foreach ($k in $saved.Keys) { [Environment]::SetEnvironmentVariable($k, $saved[$k]) } }
}
$table = [System.Collections.Generic.List[object]]::new()
# Ratio: ours / baseline (a time or a slowdown); with -Speed, baseline / ours (how many times faster).
function Add-Row([string] $Figure, [double] $Ours, [double] $Baseline, [string] $BaselineName, [string] $Target, [string] $Unit = 'ms', [switch] $Speed) {
    $table.Add([pscustomobject]@{
        Figure    = $Figure
        LeakTools = ('{0:N1} {1}' -f $Ours, $Unit)
        Baseline  = ('{0:N1} {1} ({2})' -f $Baseline, $Unit, $BaselineName)
        Ratio     = if ($Speed) { 'speed {0:N2}x' -f ($Baseline / $Ours) } else { '{0:N2}x' -f ($Ours / $Baseline) }
        Target    = $Target
    })
}

try {
    # a) start-up: bare pwsh against Import-Module + Get-ProcessPss, interleaved, order alternating.
    $savedPath = $env:PSModulePath
    $env:PSModulePath = "$moduleRoot$([IO.Path]::PathSeparator)$savedPath"
    $bare = [System.Collections.Generic.List[double]]::new(); $withModule = [System.Collections.Generic.List[double]]::new()
    $bareRun = { & $pwsh[0] @pwshRest -NoProfile -NonInteractive -c 1 > $null }
    $moduleRun = { & $pwsh[0] @pwshRest -NoProfile -NonInteractive -c 'Import-Module LeakTools; $null = Get-ProcessPss -Id $PID' > $null }
    $null = Measure-Millisecond $bareRun; $null = Measure-Millisecond $moduleRun   # file cache warm for both
    for ($r = 0; $r -lt $Rounds; $r++) {
        if ($r % 2) { $withModule.Add((Measure-Millisecond $moduleRun)); $bare.Add((Measure-Millisecond $bareRun)) }
        else { $bare.Add((Measure-Millisecond $bareRun)); $withModule.Add((Measure-Millisecond $moduleRun)) }
    }
    $env:PSModulePath = $savedPath
    $bareMs = Get-Median $bare; $modMs = Get-Median $withModule
    Add-Row -Figure 'a) pwsh -c Import-Module; Get-ProcessPss' -Ours $modMs -Baseline $bareMs -BaselineName 'pwsh -c 1' -Target '<= 1.10x'
    $imports = @(for ($r = 0; $r -lt $Rounds; $r++) { Invoke-Part 'Import' })

    # b) first snapshot of a fresh session against gcore, on one fixture; freeze from its heartbeat.
    $fixtureExe = Join-Path $work 'core-threads'
    & gcc -O0 -g -o $fixtureExe (Join-Path $PSScriptRoot '../fixtures/core-threads.c') -lpthread
    if ($LASTEXITCODE -ne 0) { throw 'gcc failed' }
    $psi = [System.Diagnostics.ProcessStartInfo]::new($fixtureExe, "$HeapMiB")
    $psi.RedirectStandardInput = $true; $psi.RedirectStandardOutput = $true
    $fixture = [System.Diagnostics.Process]::Start($psi)
    $null = $fixture.StandardOutput.ReadLine()
    function Get-Gap { $fixture.StandardInput.WriteLine('gap'); [double]($fixture.StandardOutput.ReadLine() -replace '^GAP us=', '') / 1000 }
    $snapshots = [System.Collections.Generic.List[object]]::new(); $gcores = [System.Collections.Generic.List[object]]::new()
    $haveGcore = [bool](Get-Command gcore -ErrorAction Ignore)
    try {
        for ($r = 0; $r -lt $Rounds; $r++) {
            $null = Get-Gap
            $s = Invoke-Part 'Snapshot' -TargetPid $fixture.Id
            Start-Sleep -Milliseconds 50
            $s | Add-Member Gap (Get-Gap)
            $snapshots.Add($s)
            if ($haveGcore) {
                $null = Get-Gap
                $ms = Measure-Millisecond { & gcore -o (Join-Path $work 'gcore') $fixture.Id *> $null }
                Start-Sleep -Milliseconds 50
                $gcores.Add([pscustomobject]@{ Ms = $ms; Gap = (Get-Gap) })
                Remove-Item (Join-Path $work "gcore.$($fixture.Id)") -ErrorAction Ignore
            }
        }
        $split = @(for ($r = 0; $r -lt [math]::Min(3, $Rounds); $r++) { Invoke-Part 'Snapshot' -TargetPid $fixture.Id -Environment @{ LEAKTOOLS_BENCH_HELPER_FIRST = '1' } })
    }
    finally {
        $fixture.StandardInput.Close()
        $null = $fixture.WaitForExit(10000)
    }
    if ($haveGcore) {
        Add-Row -Figure "b) first Invoke-CoreCapture, fresh session ($HeapMiB MiB)" -Ours (Get-Median $snapshots.FirstMs) -Baseline (Get-Median $gcores.Ms) -BaselineName 'gcore' -Target '<= 1x'
        Add-Row -Figure 'b) freeze (heartbeat gap)' -Ours (Get-Median $snapshots.Gap) -Baseline (Get-Median $gcores.Gap) -BaselineName 'gcore' -Target 'no longer than before'
    }

    # c) Resolve-Address on libc: addresses spread through every function of libc's symbols.
    $libc = '/usr/lib/x86_64-linux-gnu/libc.so.6'
    Import-Module $ModulePath
    $probe = [LeakTools.Core.Symbols.SymbolCache]::new()
    $libcSymbols = $probe.GetModule($libc).DebugFile
    $probe.Dispose()
    if (-not $libcSymbols) { Write-Warning 'libc has no debug file (install libc6-dbg)'; $libcSymbols = $libc }
    $funcs = foreach ($line in & nm -S --defined-only $libcSymbols) {
        $p = $line -split ' '
        if ($p.Count -ge 4 -and $p[2] -in 'T', 't', 'W', 'w') { [pscustomobject]@{ Start = [Convert]::ToUInt64($p[0], 16); Size = [Convert]::ToUInt64($p[1], 16) } }
    }
    $funcs = @($funcs | Where-Object Size -gt 0)
    $step = [math]::Max(1, [math]::Floor(($funcs | Measure-Object Size -Sum).Sum / $Count))
    $list = [System.Collections.Generic.List[string]]::new()
    foreach ($f in $funcs) { for ($a = $f.Start; $a -lt $f.Start + $f.Size -and $list.Count -lt $Count; $a += $step) { $list.Add('0x{0:x}' -f $a) } }
    $listFile = Join-Path $work 'libc-list.txt'
    Set-Content $listFile $list
    $symbolRuns = [System.Collections.Generic.List[object]]::new(); $peer = [System.Collections.Generic.List[double]]::new()
    for ($r = 0; $r -lt $Rounds; $r++) {
        $cacheHome = Join-Path $work "cache-$r"
        $coldRun = Invoke-Part 'Symbols' -Environment @{ XDG_CACHE_HOME = $cacheHome }
        $peer.Add((Measure-Millisecond { & bash -c "addr2line -f -C -i -e '$libc' < '$listFile' > /dev/null" }))
        $warmRun = Invoke-Part 'Symbols' -Environment @{ XDG_CACHE_HOME = $cacheHome }
        $symbolRuns.Add([pscustomobject]@{ Cold = $coldRun; Warm = $warmRun })
    }
    $peerMs = Get-Median $peer
    Add-Row -Figure "c) Resolve-Address $($list.Count) libc, first call, empty cache" -Ours (Get-Median $symbolRuns.Cold.FirstMs) -Baseline $peerMs -BaselineName 'addr2line' -Target 'speed >= 1.5x' -Speed
    Add-Row -Figure 'c)   second call of that session' -Ours (Get-Median $symbolRuns.Cold.SecondMs) -Baseline $peerMs -BaselineName 'addr2line' -Target 'speed >= 3x' -Speed
    Add-Row -Figure 'c)   first call, next fresh session (cache warm)' -Ours (Get-Median $symbolRuns.Warm.FirstMs) -Baseline $peerMs -BaselineName 'addr2line' -Target 'speed >= 1.5x' -Speed
    Add-Row -Figure 'c)   second call of that session' -Ours (Get-Median $symbolRuns.Warm.SecondMs) -Baseline $peerMs -BaselineName 'addr2line' -Target 'speed >= 3x' -Speed

    # d, e) the tracers on alloc-bench.c's work loop (malloc, a little work, free; 12 calls deep).
    $allocExe = Join-Path $work 'alloc-bench'
    & gcc -O2 -g -o $allocExe (Join-Path $PSScriptRoot '../fixtures/alloc-bench.c')
    if ($LASTEXITCODE -ne 0) { throw 'gcc failed' }
    function Read-LoopFigure([string[]] $Lines) {
        $r = @{}
        foreach ($l in $Lines) { if ($l -match '^(work|tight) ([0-9.]+) ') { $r[$Matches[1]] = [double]$Matches[2] } }
        if ($r.Count -lt 2) { throw "no work/tight lines in: $($Lines -join "`n")" }
        [pscustomobject]$r
    }
    function Get-AllocArgument([double] $Wait, [long] $N) { @("$Wait", '1000', "$N", "$N", '12') }
    $untracedRun = { Read-LoopFigure (& $allocExe @(Get-AllocArgument 0 2000000)) }
    $launchRun = { param($Engine, $N)
        $null = Watch-Allocation -FilePath $allocExe -ArgumentList (Get-AllocArgument 0 $N) -Engine $Engine -Expire 30 -InformationVariable said -WarningAction Ignore 6>$null
        Read-LoopFigure ([string[]]$said.MessageData) }
    $attachRun = { param($Engine, $N)
        $log = Join-Path $work "attach-$([guid]::NewGuid().ToString('n').Substring(0, 8)).log"
        $p = Start-Process $allocExe -ArgumentList (Get-AllocArgument 1.5 $N) -PassThru -RedirectStandardOutput $log
        $null = Watch-Allocation -Id $p.Id -Engine $Engine -Expire 30 -WarningAction Ignore
        $p.WaitForExit()
        Read-LoopFigure (Get-Content $log) }
    $heaptrackRun = {
        $log = Join-Path $work 'ht.log'
        $p = Start-Process $allocExe -ArgumentList (Get-AllocArgument 3 500000) -PassThru -RedirectStandardOutput $log
        Start-Sleep -Milliseconds 300
        Push-Location $work
        try { $null = & heaptrack -p $p.Id -o (Join-Path $work 'ht') 2>&1 } finally { Pop-Location }
        $p.WaitForExit()
        Read-LoopFigure (Get-Content $log) }
    $haveHeaptrack = [bool](Get-Command heaptrack -ErrorAction Ignore)
    $runs = [ordered]@{ untraced = @(); agentLaunch = @(); agentAttach = @(); breakpoint = @(); heaptrack = @() }
    for ($r = 0; $r -lt [math]::Min(3, $Rounds); $r++) {
        $runs.untraced += & $untracedRun
        $runs.agentLaunch += & $launchRun 'Agent' 1000000
        $runs.agentAttach += & $attachRun 'Agent' 1000000
        if ($r -eq 0) { $runs.breakpoint += & $launchRun 'Breakpoint' $BreakpointIterations }
        if ($haveHeaptrack) { $runs.heaptrack += & $heaptrackRun }
    }
    foreach ($loop in 'work', 'tight') {
        $base = Get-Median $runs.untraced.$loop
        $what = if ($loop -eq 'work') { 'work loop (malloc, work, free)' } else { 'tight loop (malloc, free)' }
        Add-Row -Figure "d) -Engine Breakpoint, $what, launch, 1 run" -Ours (Get-Median $runs.breakpoint.$loop) -Baseline $base -BaselineName 'untraced' -Target '< 150x' -Unit 'ns/iter'
        Add-Row -Figure "e) -Engine Agent, $what, launch" -Ours (Get-Median $runs.agentLaunch.$loop) -Baseline $base -BaselineName 'untraced' -Target '<= 1.5x' -Unit 'ns/iter'
        Add-Row -Figure "e) -Engine Agent, $what, attach to a sleeper" -Ours (Get-Median $runs.agentAttach.$loop) -Baseline $base -BaselineName 'untraced' -Target '<= 1.5x' -Unit 'ns/iter'
        if ($haveHeaptrack) { Add-Row -Figure "e) heaptrack -p, $what, attach" -Ours (Get-Median $runs.heaptrack.$loop) -Baseline $base -BaselineName 'untraced' -Target 'agent below it' -Unit 'ns/iter' }
    }

    Write-Host "Cold start and first calls (issue 16): medians of $Rounds runs (tracers: 3, breakpoint: 1), interleaved with their baselines"
    $table | Format-Table -AutoSize | Out-String -Width 220 | Write-Host
    Write-Host 'Where the cold time goes (medians of the fresh sessions above):'
    Write-Host ('  pwsh start until the script runs      : {0,7:N0} ms (process start time, coarse)' -f (Get-Median $imports.SinceStartMs))
    Write-Host ('  Import-Module LeakTools               : {0,7:N1} ms, JIT {1:N0} methods {2:N1} ms; {3} assemblies loaded after' -f (Get-Median $imports.ImportMs), (Get-Median $imports.ImportJit.Methods), (Get-Median $imports.ImportJit.Ms), (Get-Median $imports.Assemblies))
    Write-Host ('  first Get-ProcessPss -Id $PID         : {0,7:N1} ms, JIT {1:N0} methods {2:N1} ms' -f (Get-Median $imports.FirstCommandMs), (Get-Median $imports.FirstCommandJit.Methods), (Get-Median $imports.FirstCommandJit.Ms))
    Write-Host ('  first snapshot: helper start (echo)   : {0,7:N1} ms; the snapshot after it {1:N1} ms (JIT in pwsh {2:N0} methods {3:N1} ms), freeze reported {4:N1} ms' -f (Get-Median $split.HelperStartMs), (Get-Median $split.FirstMs), (Get-Median $split.FirstJit.Methods), (Get-Median $split.FirstJit.Ms), (Get-Median $snapshots.ReportedFreezeMs))
    Write-Host ('  first Resolve-Address: JIT in pwsh    : {0:N0} methods {1:N1} ms (empty cache); {2:N0} methods {3:N1} ms (warm cache); {4} frames named for {5} addresses' -f (Get-Median $symbolRuns.Cold.FirstJit.Methods), (Get-Median $symbolRuns.Cold.FirstJit.Ms), (Get-Median $symbolRuns.Warm.FirstJit.Methods), (Get-Median $symbolRuns.Warm.FirstJit.Ms), $symbolRuns[0].Cold.Named, $list.Count)
    Write-Host ('  Import-Module of the snapshot sessions: {0:N1} ms; of the symbol sessions {1:N1} ms' -f (Get-Median $snapshots.ImportMs), (Get-Median $symbolRuns.Cold.ImportMs))
}
finally {
    Remove-Item -Recurse -Force $work -ErrorAction Ignore
}
exit 0
