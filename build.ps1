#!/usr/bin/env pwsh
<#
.SYNOPSIS
    Builds, tests and demonstrates LeakTools.
.DESCRIPTION
    A thin front end over build/Tasks.ps1.
      Build    compile and stage the importable module at out/LeakTools (dlls, formats, types, help)
      Test     Build, Lint, xunit and Pester; prints "N passed, N failed" last; exits non-zero on failure
      Lint     PSScriptAnalyzer (-Settings PSGallery) on every script, the staged module and the root
               manifest; plus parse, verbs, manifests, OutputType, help and views
      Demo     run LeakTools against examples/leaky-daemon.c
      Bench    run the benchmarks under tests/bench and print their ratios
      Package  pack the staged module into out/LeakTools.<version>.nupkg (Publish-PSResource -NupkgPath)
      Clean    remove out/ and every bin/obj
.EXAMPLE
    dotnet tool restore && dotnet pwsh ./build.ps1 Test
#>
[CmdletBinding()]
param(
    [Parameter(Position = 0)]
    [ValidateSet('Build', 'Test', 'Lint', 'Demo', 'Bench', 'Package', 'Clean')]
    [string[]] $Task = 'Build',

    [ValidateSet('Debug', 'Release')]
    [string] $Configuration = 'Release',

    # Test: only tests whose full name contains this text (xunit FullyQualifiedName~X, Pester *X*).
    [string] $Filter
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
. (Join-Path $PSScriptRoot 'build/Tasks.ps1')

$exitCode = 0
foreach ($name in $Task) {
    $exitCode = [Math]::Max($exitCode, [int](& "Invoke-${name}Task"))
}
exit $exitCode
