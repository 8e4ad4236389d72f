<#
.SYNOPSIS
    Runs tests/Pester/*.Tests.ps1 against the staged module in this fresh pwsh and writes the
    counts to -ResultPath as JSON (Invoke-Pester alone exits 0 on failures).
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $ResultPath,
    [string] $Filter
)
$ErrorActionPreference = 'Stop'
$env:NO_COLOR = '1'
$root = Split-Path (Split-Path $PSScriptRoot -Parent) -Parent

$packages = if ($env:NUGET_PACKAGES) { $env:NUGET_PACKAGES } else { Join-Path $HOME '.nuget/packages' }
$pester = Join-Path $packages 'pester/5.7.1/tools/Pester.psd1'
if (-not (Test-Path $pester)) {
    # The test project downloads Pester (PackageDownload); restore it if the build did not run yet.
    & dotnet restore (Join-Path $root 'tests/LeakTools.Tests/LeakTools.Tests.csproj') | Out-Host
}
if (-not (Test-Path $pester)) { throw "Pester 5.7.1 not found at $pester" }
Import-Module $pester -Force

$env:LEAKTOOLS_TEST_MODULE = $ModulePath
$config = New-PesterConfiguration
$config.Run.Path = $PSScriptRoot
$config.Run.PassThru = $true
$config.Output.Verbosity = 'Normal'
$config.Output.RenderMode = 'Plaintext'
if ($Filter) { $config.Filter.FullName = "*$Filter*" }
$result = Invoke-Pester -Configuration $config

$counts = [ordered]@{
    Passed  = $result.PassedCount
    Failed  = $result.FailedCount + $result.FailedBlocksCount + $result.FailedContainersCount
    Skipped = $result.SkippedCount + $result.NotRunCount
}
$counts | ConvertTo-Json | Set-Content -Path $ResultPath
exit ([int]($counts.Failed -gt 0))
