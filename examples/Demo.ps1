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

    Show 'And the machine as a whole'
    Write-Host '> Get-SystemMemory'
    Get-SystemMemory | Format-List | Out-Wide
}
finally {
    if (-not $daemon.HasExited) { Stop-Process -Id $daemon.Id; $daemon.WaitForExit(5000) | Out-Null }
    Remove-Item -Recurse -Force $work -ErrorAction Ignore
}
Write-Host "`nDemo finished; leaky-daemon stopped."
exit 0
