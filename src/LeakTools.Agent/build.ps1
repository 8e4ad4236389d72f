#!/usr/bin/env pwsh
<#
.SYNOPSIS
    Builds the in-process allocation agent (libleaktools-agent.so) with the machine's gcc.
.DESCRIPTION
    Called by build/Tasks.ps1 (build.ps1 Build) with the staged module's native folder. The agent
    links only libc (and libpthread, for glibc < 2.34) and binds the oldest symbol versions, so one
    build also loads on older distributions (RHEL 7's glibc 2.17).
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)]
    [string] $OutputPath,

    [string] $Compiler = $(if ($env:CC) { $env:CC } else { 'gcc' })
)

$ErrorActionPreference = 'Stop'
$null = New-Item -ItemType Directory -Path $OutputPath -Force
$sources = Get-ChildItem $PSScriptRoot -Filter '*.c' | Sort-Object Name | ForEach-Object FullName
$output = Join-Path $OutputPath 'libleaktools-agent.so'
$flags = @(
    '-std=gnu11', '-O2', '-g', '-fPIC', '-shared', '-Wall', '-Wextra', '-Werror'
    '-fvisibility=hidden'            # only leaktools_agent_start, leaktools_agent_abi and leaktools_agent_coreinfo are exported
    '-ftls-model=initial-exec'       # no __tls_get_addr (it may allocate) inside hooks
    '-fno-omit-frame-pointer'        # hooks find their caller's frame through it
    '-fno-stack-protector', '-U_FORTIFY_SOURCE'
    '-Wl,-z,now', '-Wl,-z,relro', '-Wl,--no-undefined', '-Wl,-soname,libleaktools-agent.so'
    '-Wl,--no-as-needed', '-l:libpthread.so.0'
)
Write-Host "    gcc: $output"
& $Compiler @flags -o $output @sources
if ($LASTEXITCODE -ne 0) { throw "Building the agent failed ($Compiler exit code $LASTEXITCODE)" }
