<#
.SYNOPSIS
    Benchmark: Find-LeakedAllocation and Get-HeapSummary on a core with about 1 GiB of heap in
    -Blocks blocks (tests/bench/heap-bench.c: 64-2047 bytes each, a pointer and data in each,
    every 20th leaked, every 50th freed). Each measurement runs in a fresh pwsh and reports its
    wall time and peak RSS (VmHWM). Baseline, in the same run: reading the core's PT_LOAD segments
    sequentially into a 1 MiB buffer (what any tool must at least do to see the heap).
    Targets (issue 9): analysis under 5 s, peak memory under 1.5x the heap size.
#>
param(
    [string] $ModulePath = (Join-Path $PSScriptRoot '../../out/LeakTools/LeakTools.psd1'),
    [int] $Blocks = 1000000,
    [int] $Rounds = 2
)
$ErrorActionPreference = 'Stop'
Import-Module $ModulePath -Force
$ModulePath = (Resolve-Path $ModulePath).Path

$work = Join-Path ([IO.Path]::GetTempPath()) "leaktools-bench-heap-$PID"
$null = New-Item -ItemType Directory -Force $work
$exe = Join-Path $work 'heap-bench'
& gcc -O2 -o $exe (Join-Path $PSScriptRoot 'heap-bench.c')
if ($LASTEXITCODE -ne 0) { throw 'gcc failed' }

$exePwsh = [Environment]::ProcessPath
$pwsh = if ((Split-Path $exePwsh -Leaf) -like 'dotnet*') { @($exePwsh, (Join-Path $PSHOME 'pwsh.dll')) } else { @($exePwsh) }

# Runs $Script in a fresh pwsh; it prints "ms" last; returns wall ms (as the script measured it) and VmHWM.
function Measure-Child([string] $Name, [string] $Script) {
    $full = "`$ErrorActionPreference = 'Stop'; Import-Module '$ModulePath'; $Script; " +
            "(Get-Content /proc/self/status | Where-Object { `$_ -like 'VmHWM:*' }) -replace '\D', ''"
    $lines = & $pwsh[0] @($pwsh | Select-Object -Skip 1) -NoProfile -NonInteractive -Command $full
    if ($LASTEXITCODE -ne 0) { throw "$Name failed: $lines" }
    [pscustomobject]@{ Name = $Name; Ms = [double]$lines[-3]; Result = $lines[-2]; PeakBytes = [long]$lines[-1] * 1024 }
}

$psi = [System.Diagnostics.ProcessStartInfo]::new($exe, "$Blocks")
$psi.RedirectStandardInput = $true
$psi.RedirectStandardOutput = $true
$fixture = [System.Diagnostics.Process]::Start($psi)
try {
    $ready = $fixture.StandardOutput.ReadLine()
    $expected = [int]($ready -replace '^.*leaked=', '')
    $core = (Invoke-CoreCapture -Id $fixture.Id -Destination $work).Path
    $fixture.StandardInput.Close()
    $null = $fixture.WaitForExit(20000)

    $rows = [System.Collections.Generic.List[object]]::new()
    $baseline = @'
$core = '{0}'
$sw = [Diagnostics.Stopwatch]::StartNew()
$c = [LeakTools.Core.Dumps.CoreFile]::Open($core)
$buffer = [byte[]]::new(1MB); $total = 0L
foreach ($s in $c.Segments) {{
    for ($a = $s.VirtualAddress; $a -lt $s.VirtualAddress + [uint64]$s.FileSize; $a += [uint64]$buffer.Length) {{ $total += $c.ReadMemory($a, $buffer) }}
}}
$c.Dispose()
$sw.ElapsedMilliseconds; $total
'@ -f $core
    $find = @'
$sw = [Diagnostics.Stopwatch]::StartNew(); $n = @(Find-LeakedAllocation -Path '{0}').Count; $sw.ElapsedMilliseconds; $n
'@ -f $core
    $summary = @'
$sw = [Diagnostics.Stopwatch]::StartNew(); $s = Get-HeapSummary -Path '{0}'; $sw.ElapsedMilliseconds; ($s | Measure-Object UsedBytes -Sum).Sum
'@ -f $core
    for ($i = 0; $i -lt $Rounds; $i++) {
        $rows.Add((Measure-Child 'Baseline: read the core''s segments' $baseline))
        $rows.Add((Measure-Child 'Find-LeakedAllocation' $find))
        $rows.Add((Measure-Child 'Get-HeapSummary' $summary))
    }
    $heap = (Get-HeapSummary -Path $core | Measure-Object HeapBytes -Sum).Sum
    $found = ($rows | Where-Object Name -eq 'Find-LeakedAllocation' | Select-Object -First 1).Result
}
finally {
    if (-not $fixture.HasExited) { $fixture.Kill() }
    Remove-Item -Recurse -Force $work -ErrorAction Ignore
}

function Median([double[]] $v) { $s = $v | Sort-Object; $s[[int][Math]::Floor(($s.Count - 1) / 2)] }
$table = $rows | Group-Object Name | ForEach-Object {
    [pscustomobject]@{
        Measurement      = $_.Name
        Runs             = $_.Count
        'Time(ms)'       = [Math]::Round((Median $_.Group.Ms), 0)
        'PeakRSS(MiB)'   = [Math]::Round((Median $_.Group.PeakBytes) / 1MB, 0)
        'Peak/Heap'      = [Math]::Round((Median $_.Group.PeakBytes) / $heap, 2)
        Result           = $_.Group[0].Result
    }
}
Write-Host ("Core of {0:N0} blocks, {1:N0} MiB of heap; {2:N0} leaks expected, {3} found; medians of {4} rounds, each in a fresh pwsh" -f $Blocks, ($heap / 1MB), $expected, $found, $Rounds)
$table | Format-Table -AutoSize | Out-String -Width 160 | Write-Host
$b = $table | Where-Object Measurement -like 'Baseline*'
$f = $table | Where-Object Measurement -eq 'Find-LeakedAllocation'
Write-Host ('Find-LeakedAllocation / baseline: time {0:N2}x, peak memory {1:N2}x; analysis {2:N1} s (target < 5 s), peak {3:N2}x the heap (target < 1.5x)' -f
    ($f.'Time(ms)' / $b.'Time(ms)'), ($f.'PeakRSS(MiB)' / $b.'PeakRSS(MiB)'), ($f.'Time(ms)' / 1000), $f.'Peak/Heap')
if ("$found" -ne "$expected") { Write-Host "MISMATCH: $found leaks found, $expected made" }
exit 0
