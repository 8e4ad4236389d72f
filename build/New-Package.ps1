<#
.SYNOPSIS
    Packs a staged module folder (out/LeakTools) into LeakTools.<version>.nupkg with PSResourceGet's
    Compress-PSResource: the package Publish-PSResource -NupkgPath pushes and Install-PSResource
    installs. A nupkg keeps no Unix modes; the module restores its natives' execute bits on import.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $OutputPath
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0

$folder = Split-Path $ModulePath -Parent
$manifest = Import-PowerShellDataFile $ModulePath
$null = New-Item -ItemType Directory -Path $OutputPath -Force
$nupkg = Join-Path $OutputPath "LeakTools.$($manifest.ModuleVersion).nupkg"
if (Test-Path $nupkg) { Remove-Item $nupkg }
Import-Module Microsoft.PowerShell.PSResourceGet
Compress-PSResource -Path $folder -DestinationPath $OutputPath
if (-not (Test-Path $nupkg)) { throw "Compress-PSResource made no $nupkg" }
Get-Item $nupkg
