<#
.SYNOPSIS
    The LeakTools demo: builds examples/leaky-daemon.c, starts it, shows what LeakTools tells
    about it, then stops it. Run it with: dotnet pwsh ./build.ps1 Demo
#>
param(
    [string] $ModulePath = (Join-Path $PSScriptRoot '../out/LeakTools/LeakTools.psd1'),
    [double] $Seconds = 6
)
$ErrorActionPreference = 'Stop'
Import-Module $ModulePath -Force

$work = Join-Path ([IO.Path]::GetTempPath()) "leaktools-demo-$PID"
$null = New-Item -ItemType Directory -Force $work
$exe = Join-Path $work 'leaky-daemon'
& gcc -O2 -g -o $exe (Join-Path $PSScriptRoot 'leaky-daemon.c')
if ($LASTEXITCODE -ne 0) { throw 'gcc failed to build examples/leaky-daemon.c' }

function Show([string] $Title) { Write-Host "`n### $Title" -ForegroundColor Cyan }
# Tables are wider than a redirected console's 80 columns: render them at a fixed width.
function Out-Wide { param([Parameter(ValueFromPipeline)] $InputObject) end { $input | Out-String -Width 170 | Write-Host } }

$daemon = Start-Process -FilePath $exe -ArgumentList 200, 2 -PassThru -RedirectStandardOutput (Join-Path $work 'daemon.log')
try {
    Start-Sleep -Milliseconds 500
    Show "leaky-daemon is running as pid $($daemon.Id). How much memory does it really use?"
    Write-Host '> Get-ProcessPss leaky-daemon'
    Get-ProcessPss leaky-daemon | Format-Table | Out-Wide

    Show "Sampling it every half second for $Seconds seconds, and judging the trend"
    Write-Host "> `$samples = Watch-ProcessMemory -Id $($daemon.Id) -Interval 0.5 -Duration $Seconds"
    $samples = @(Watch-ProcessMemory -Id $daemon.Id -Interval 0.5 -Duration $Seconds -ProgressAction SilentlyContinue)
    $samples | Select-Object -First 4 -Property @{ n = 'Timestamp'; e = { $_.Timestamp.ToString('HH:mm:ss.fff') } }, @{ n = 'Pss(MiB)'; e = { '{0:N1}' -f ($_.Pss / 1MB) } }, @{ n = 'Uss(MiB)'; e = { '{0:N1}' -f ($_.Uss / 1MB) } } |
        Format-Table | Out-Wide
    Write-Host "($($samples.Count) samples.)"
    Write-Host '> $samples | Measure-MemoryTrend'
    $trend = $samples | Measure-MemoryTrend
    $trend | Format-Table | Out-Wide
    Write-Host ('Verdict: {0}. {1}' -f $trend.Verdict, $trend.Reason)

    Show 'Where does the memory sit? The five biggest mappings (pmap -X as objects)'
    Write-Host '> Get-ProcessPss leaky-daemon | Get-ProcessMemoryMap | Sort-Object Rss -Descending | Select-Object -First 5'
    Get-ProcessPss leaky-daemon | Get-ProcessMemoryMap | Sort-Object Rss -Descending | Select-Object -First 5 | Format-Table | Out-Wide
    Write-Host 'The growth is anonymous memory in [heap]: malloc''d blocks that are never freed.'

    Show 'Which call stack leaks? Watch-Allocation hooks the running daemon from inside for 4 seconds (memleax done right, at heaptrack''s cost)'
    Write-Host '> Watch-Allocation -Id $daemon.Id -Expire 1 -Duration 4 | Sort-Object ExpiredBytes -Descending | Select-Object -First 1'
    $leak = Watch-Allocation -Id $daemon.Id -Expire 1 -Duration 4 | Sort-Object ExpiredBytes -Descending | Select-Object -First 1
    $leak | Out-Wide
    Write-Host ('{0:N0} blocks of {1:N0} bytes outlived 1 s, allocated by {2} at {3} (the {4} engine: an agent loaded into the daemon, unhooked again at the end); the daemon runs on, untraced ({5}).' -f $leak.ExpiredCount, ($leak.ExpiredBytes / [math]::Max(1, $leak.ExpiredCount)), $leak.Function, $leak.Location, $leak.Engine, ((Get-Content "/proc/$($daemon.Id)/status" | Select-String TracerPid).Line -replace '\s+', ' '))

    Show 'Which code allocates? Resolve-Address turns addresses into functions and source lines'
    Write-Host '> Get-ElfSymbol $exe -Type FUNC -DefinedOnly | Where-Object Size -gt 0'
    Get-ElfSymbol $exe -Type FUNC -DefinedOnly | Where-Object Size -gt 0 | Format-Table | Out-Wide
    # At -O2 gcc inlines session_open and handle_request into main: find the leaking malloc's code
    # among main's addresses (file addresses, like addr2line -e), then resolve it in the live daemon.
    $source = Join-Path $PSScriptRoot 'leaky-daemon.c'
    $leakLine = (Select-String -Path $source -Pattern 's->buffer = malloc').LineNumber
    $main = Get-ElfSymbol $exe -Name main -Type FUNC
    $site = [int]$main.Address..([int]$main.Address + $main.Size - 1) | Resolve-Address -Path $exe |
        Where-Object { $_.Line -eq $leakLine -and $_.Function -eq 'session_open' } | Select-Object -First 1
    $base = (Get-ProcessMemoryMap -Id $daemon.Id | Where-Object { $_.Mapping -eq $exe -and $_.Offset -eq 0 }).Address
    $runtime = $base + $site.ModuleOffset
    Write-Host ('> Resolve-Address -Id {0} 0x{1:x}' -f $daemon.Id, $runtime)
    Resolve-Address -Id $daemon.Id $runtime | Format-Table | Out-Wide
    Write-Host ('One runtime address, three frames: session_open was inlined into handle_request, itself inlined into main; line {0} is the buffer that leaks.' -f $leakLine)

    Show 'Hand it to the developers: a live core, without killing the daemon (gcore without gdb)'
    Write-Host '> Get-ProcessPss leaky-daemon | Invoke-CoreCapture -Destination $work -Compress'
    $core = Get-ProcessPss leaky-daemon | Invoke-CoreCapture -Destination $work -Compress
    $core | Format-Table | Out-Wide
    Write-Host ('The daemon was stopped for {0:N1} ms and is still running: {1}.' -f $core.FreezeTime.TotalMilliseconds, (-not $daemon.HasExited))

    Show 'Which blocks leaked? Read the glibc heap of a snapshot: no tracer, no restart'
    Write-Host '> Find-LeakedAllocation -Id $daemon.Id | Group-Object Size, TypeName | Sort-Object Count -Descending'
    Find-LeakedAllocation -Id $daemon.Id | Group-Object Size, TypeName | Sort-Object Count -Descending | Select-Object -First 5 |
        Format-Table Count, Name | Out-Wide
    Write-Host '> Get-HeapSummary -Id $daemon.Id'
    Get-HeapSummary -Id $daemon.Id | Format-Table | Out-Wide
    Write-Host 'Blocks of 16,392 usable bytes that nothing points to: the 16 KiB session buffers session_close() forgets.'

    Show 'Where were those blocks allocated? Snapshot again while Watch-Allocation''s agent watches: its table is in the core'
    Write-Host '> $watch = Start-ThreadJob { Watch-Allocation -Id $using:daemon.Id -Expire 1h }; Start-Sleep 2'
    Write-Host '> Find-LeakedAllocation -Id $daemon.Id | Group-Object Function, Location, Size -NoElement | Sort-Object Count -Descending'
    $modulePath = $ModulePath
    $daemonId = $daemon.Id
    $watch = Start-ThreadJob { Import-Module $using:modulePath; Watch-Allocation -Id $using:daemonId -Expire 1h }
    try {
        $deadline = [DateTime]::UtcNow.AddSeconds(20)
        while (-not (Select-String -Quiet 'libleaktools-agent' "/proc/$daemonId/maps") -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 100 }
        Start-Sleep 2   # let it leak while the agent watches
        $sited = Find-LeakedAllocation -Id $daemon.Id
        $sited | Group-Object Function, Location, Size -NoElement | Sort-Object Count -Descending | Select-Object -First 5 | Format-Table -AutoSize | Out-Wide
        Write-Host ('{0:N0} of the {1:N0} leaked blocks were allocated while the agent watched, and name their call site; the older ones have no Function.' -f @($sited | Where-Object Function).Count, $sited.Count)
    }
    finally {
        $watch | Stop-Job
        $watch | Remove-Job -Force
    }

    Show 'Cores on this machine: abrt, systemd-coredump, core_pattern''s folder, and -Path folders'
    Write-Host '> Get-CoreDump -Path $work | Where-Object Name -eq leaky-daemon | Sort-Object Time'
    Get-CoreDump -Path $work | Where-Object Name -eq leaky-daemon | Sort-Object Time | Format-Table | Out-Wide
    Write-Host '> Get-CoreDump -Path $work | Select-Object -First 1 | Format-List Name, Id, CommandLine, Executable, Threads, Compression, Size'
    Get-CoreDump -Path $work | Select-Object -First 1 | Format-List Name, Id, CommandLine, Executable, Threads, Compression, Size | Out-Wide

    Show 'And the machine as a whole'
    Write-Host '> Get-SystemMemory'
    Get-SystemMemory | Format-List | Out-Wide

    if (Get-Command valgrind -ErrorAction Ignore) {
        Show 'Which line leaks? A second daemon under valgrind for 3 seconds, stopped with SIGINT like Ctrl+C'
        Write-Host "> `$report = Invoke-Valgrind $exe -ArgumentList 200, 2 -Duration 3"
        Write-Host '> $report | Where-Object Kind -eq DefinitelyLost; $report[-1]'
        $report = Invoke-Valgrind $exe -ArgumentList 200, 2 -Duration 3
        $report | Where-Object Kind -eq DefinitelyLost | Out-Wide
        $report[-1] | Out-Wide
        $lost = $report | Where-Object Kind -eq DefinitelyLost | Sort-Object Bytes -Descending | Select-Object -First 1
        Write-Host ('{0:N0} bytes in {1:N0} blocks lost, allocated in {2} at {3}:{4}: the buffer session_close() forgets.' -f $lost.Bytes, $lost.Blocks, $lost.Function, (Split-Path $lost.File -Leaf), $lost.Line)
    }
    else {
        Write-Host "`n(valgrind is not installed: skipping Invoke-Valgrind)"
    }
}
finally {
    if (-not $daemon.HasExited) { Stop-Process -Id $daemon.Id; $daemon.WaitForExit(5000) | Out-Null }
    Remove-Item -Recurse -Force $work -ErrorAction Ignore
}
Write-Host "`nDemo finished; leaky-daemon stopped."
exit 0
