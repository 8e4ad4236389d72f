<#
.SYNOPSIS
    Benchmark: symbolizing 50,000 addresses (libc through its build-id debug file, plus the C and
    C++ symbols fixtures) against binutils addr2line -f -C -i reading the same lists, one process
    per module, in the same run. Prints cold, warm and memory figures.
    Targets (issue 3): cold no slower than addr2line, warm at least 10x faster, the symbolizer's
    memory for libc plus the fixtures under 200 MB.
#>
param(
    [string] $ModulePath = (Join-Path $PSScriptRoot '../../out/LeakTools/LeakTools.psd1'),
    [int] $Count = 50000,
    [int] $Rounds = 3
)
$ErrorActionPreference = 'Stop'
Import-Module $ModulePath -Force
$core = Join-Path (Split-Path $ModulePath) 'LeakTools.Core.dll'
Add-Type -Path $core

Add-Type -IgnoreWarnings -CompilerOptions '/nowarn:1701' -ReferencedAssemblies $core, 'System.Collections', 'System.Runtime', 'System.Linq' -TypeDefinition @'
using System;
using System.Collections.Generic;
using System.Diagnostics;
using LeakTools.Core.Symbols;

public static class SymbolizerBench
{
    // Resolves every (module, address) through one cache; returns elapsed milliseconds.
    public static double Resolve(SymbolCache cache, string[] modules, ulong[][] addresses, out long frames)
    {
        frames = 0;
        var clock = Stopwatch.StartNew();
        for (int m = 0; m < modules.Length; m++)
        {
            ModuleSymbolizer module = cache.GetModule(modules[m]);
            foreach (ulong a in addresses[m]) frames += module.Resolve(a).Frames.Count;
        }
        return clock.Elapsed.TotalMilliseconds;
    }

    // The same, producing StackFrame objects as the cmdlet and the tracers do.
    public static double ResolveToFrames(SymbolCache cache, string[] modules, ulong[][] addresses)
    {
        var clock = Stopwatch.StartNew();
        var list = new List<LeakTools.StackFrame>(8);
        for (int m = 0; m < modules.Length; m++)
        {
            ModuleSymbolizer module = cache.GetModule(modules[m]);
            foreach (ulong a in addresses[m])
            {
                list.Clear();
                module.Resolve(a).AppendFrames(list, a, module.Path, a, a);
            }
        }
        return clock.Elapsed.TotalMilliseconds;
    }
}
'@

$work = Join-Path ([IO.Path]::GetTempPath()) "leaktools-bench-symbols-$PID"
$null = New-Item -ItemType Directory -Force $work
try {
    $src = Join-Path $PSScriptRoot '../fixtures/symbols'
    $c = Join-Path $work 'fixture-c'
    $cpp = Join-Path $work 'fixture-cpp'
    & gcc -O2 -g -o $c (Join-Path $src 'symbols-main.c') (Join-Path $src 'symbols-util.c')
    & g++ -O2 -g -o $cpp (Join-Path $src 'symbols-cpp.cpp')
    $libc = '/usr/lib/x86_64-linux-gnu/libc.so.6'
    $probe = [LeakTools.Core.Symbols.SymbolCache]::new()
    $libcDebug = $probe.GetModule($libc).DebugFile
    $probe.Dispose()
    if (-not $libcDebug) { Write-Warning 'libc has no debug file (install libc6-dbg): libc is resolved from symbols only' }

    # Addresses spread through every function (nm -S): as many as the fixtures have bytes of code
    # (up to 10 % each), the rest in libc.
    function Get-Spread([string] $Binary, [int] $N, [int] $Shift = 0) {
        $funcs = foreach ($line in & nm -S --defined-only $Binary) {
            $p = $line -split ' '
            if ($p.Count -ge 4 -and $p[2] -in 'T', 't', 'W', 'w') { [pscustomobject]@{ Start = [Convert]::ToUInt64($p[0], 16); Size = [Convert]::ToUInt64($p[1], 16) } }
        }
        $funcs = @($funcs | Where-Object Size -gt 0)
        $total = ($funcs | Measure-Object Size -Sum).Sum
        $step = [math]::Max(1, [math]::Floor($total / $N))
        $list = [System.Collections.Generic.List[uint64]]::new()
        foreach ($f in $funcs) { for ($a = $f.Start + $Shift; $a -lt $f.Start + $f.Size; $a += $step) { $list.Add($a) } }
        , $list.GetRange(0, [math]::Min($N, $list.Count)).ToArray()
    }
    $modules = @($libc, $c, $cpp)
    $symbolFiles = @($(if ($libcDebug) { $libcDebug } else { $libc }), $c, $cpp)
    $cSet = Get-Spread $c ([int]($Count / 10))
    $cppSet = Get-Spread $cpp ([int]($Count / 10))
    $shares = @(($Count - $cSet.Count - $cppSet.Count), $cSet.Count, $cppSet.Count)
    $sets = @((Get-Spread $symbolFiles[0] $shares[0]), $cSet, $cppSet)
    # Different addresses in the same functions, for the "indexes built, addresses new" figure.
    $fresh = for ($i = 0; $i -lt 3; $i++) { , (Get-Spread -Binary $symbolFiles[$i] -N $shares[$i] -Shift 1) }
    $total = ($sets | ForEach-Object Count | Measure-Object -Sum).Sum
    for ($i = 0; $i -lt 3; $i++) { Set-Content (Join-Path $work "list$i.txt") ($sets[$i] | ForEach-Object { '0x{0:x}' -f $_ }) }

    $median = { param($list) $s = @($list | Sort-Object); $s[[int][math]::Floor($s.Count / 2)] }
    $sw = [System.Diagnostics.Stopwatch]::new()

    # Baseline: addr2line, one process per module reading its list (what a script would do).
    $peer = for ($r = 0; $r -lt $Rounds; $r++) {
        $sw.Restart()
        for ($i = 0; $i -lt 3; $i++) { & bash -c "addr2line -f -C -i -e '$($modules[$i])' < '$work/list$i.txt' > /dev/null" }
        $sw.Stop(); $sw.Elapsed.TotalMilliseconds
    }
    $peerMs = & $median $peer

    # First call in this process: JIT compilation included (what a one-off Resolve-Address pays).
    $frames = 0L
    $cache = [LeakTools.Core.Symbols.SymbolCache]::new()
    $firstMs = [SymbolizerBench]::Resolve($cache, $modules, $sets, [ref]$frames)
    $cache.Dispose()

    # Cold: a new symbolizer each round (files opened, sections decompressed, units indexed).
    $coldRuns = [System.Collections.Generic.List[double]]::new()
    $warmRuns = [System.Collections.Generic.List[double]]::new()
    $warmFramesRuns = [System.Collections.Generic.List[double]]::new()
    $freshRuns = [System.Collections.Generic.List[double]]::new()
    for ($r = 0; $r -lt $Rounds; $r++) {
        $cache = [LeakTools.Core.Symbols.SymbolCache]::new()
        $coldRuns.Add([SymbolizerBench]::Resolve($cache, $modules, $sets, [ref]$frames))
        $freshRuns.Add([SymbolizerBench]::Resolve($cache, $modules, $fresh, [ref]$null))
        $warmRuns.Add([SymbolizerBench]::Resolve($cache, $modules, $sets, [ref]$null))
        $warmFramesRuns.Add([SymbolizerBench]::ResolveToFrames($cache, $modules, $sets))
        $cache.Dispose()
    }
    $coldMs = & $median $coldRuns
    $warmMs = & $median $warmRuns
    $warmFramesMs = & $median $warmFramesRuns
    $freshMs = & $median $freshRuns

    # The cmdlet end to end on libc's list: addresses as one argument, and one by one through the
    # pipeline (PowerShell's per-object binding included). The module's shared cache is cold.
    $lines = Get-Content (Join-Path $work 'list0.txt')
    $sw.Restart()
    $null = Resolve-Address -Path $libc -Address $lines
    $sw.Stop()
    $cmdletMs = $sw.Elapsed.TotalMilliseconds
    $sw.Restart()
    $null = $lines | Resolve-Address -Path $libc
    $sw.Stop()
    $pipelineMs = $sw.Elapsed.TotalMilliseconds
    $sw.Restart()
    $null = & bash -c "addr2line -f -C -i -e '$libc' < '$work/list0.txt' > /dev/null"
    $sw.Stop()
    $cmdletPeerMs = $sw.Elapsed.TotalMilliseconds

    # Memory of a symbolizer holding libc and both fixtures with every unit indexed.
    [GC]::Collect(); [GC]::WaitForPendingFinalizers(); [GC]::Collect()
    $before = [GC]::GetTotalMemory($true)
    $rssBefore = [System.Diagnostics.Process]::GetCurrentProcess().WorkingSet64
    $cache = [LeakTools.Core.Symbols.SymbolCache]::new()
    $null = [SymbolizerBench]::Resolve($cache, $modules, $sets, [ref]$null)
    foreach ($m in $modules) { $cache.GetModule($m).LoadAll() }
    $after = [GC]::GetTotalMemory($true)
    $rssAfter = [System.Diagnostics.Process]::GetCurrentProcess().WorkingSet64
    $native = [LeakTools.Core.Symbols.ElfFile]::DecompressedBytesInUse
    $cache.Dispose()

    Write-Host ('Resolve {0:N0} addresses (libc {1:N0}, C fixture {2:N0}, C++ fixture {3:N0}; {4:N0} frames with inlining), medians of {5} rounds' -f $total, $sets[0].Count, $sets[1].Count, $sets[2].Count, $frames, $Rounds)
    Write-Host ('  addr2line -f -C -i, one process per module (baseline): {0,9:N1} ms' -f $peerMs)
    Write-Host ('  first call in a fresh process (JIT included)          : {0,9:N1} ms  ratio {1,6:N2}x addr2line' -f $firstMs, ($firstMs / $peerMs))
    Write-Host ('  cold: new symbolizer, every file parsed               : {0,9:N1} ms  ratio {1,6:N2}x  (target <= 1x)' -f $coldMs, ($coldMs / $peerMs))
    Write-Host ('  warm, indexes built, addresses not seen before        : {0,9:N1} ms  {1,6:N1}x faster' -f $freshMs, ($peerMs / $freshMs))
    Write-Host ('  warm, addresses seen before (cache hits)              : {0,9:N1} ms  {1,6:N1}x faster  (target >= 10x)' -f $warmMs, ($peerMs / $warmMs))
    Write-Host ('  warm, as StackFrame objects                           : {0,9:N1} ms  {1,6:N1}x faster' -f $warmFramesMs, ($peerMs / $warmFramesMs))
    Write-Host ('  Resolve-Address -Path libc -Address <{0:N0} strings>  : {1,9:N1} ms  ratio {2,6:N2}x addr2line on that list ({3:N1} ms)' -f $sets[0].Count, $cmdletMs, ($cmdletMs / $cmdletPeerMs), $cmdletPeerMs)
    Write-Host ('  the same strings piped one by one                     : {0,9:N1} ms  ratio {1,6:N2}x' -f $pipelineMs, ($pipelineMs / $cmdletPeerMs))
    Write-Host ('  memory, libc + fixtures fully indexed: {0:N1} MB = managed {1:N1} MB + decompressed debug sections {2:N1} MB (working set +{3:N1} MB)  (target < 200 MB)' -f ((($after - $before) + $native) / 1MB), (($after - $before) / 1MB), ($native / 1MB), (($rssAfter - $rssBefore) / 1MB))
}
finally {
    Remove-Item -Recurse -Force $work -ErrorAction Ignore
}
exit 0
