# Tasks behind build.ps1. Each Invoke-<Name>Task writes to the host and returns an exit code.

$script:Root = Split-Path $PSScriptRoot -Parent
$script:Out = Join-Path $Root 'out'
$script:ModuleOut = Join-Path $Out 'LeakTools'
$script:Dotnet = if ($env:DOTNET_HOST_PATH) { $env:DOTNET_HOST_PATH } else { 'dotnet' }

function Write-Step([string] $Text) {
    Write-Host "==> $Text"
}

# A command line that starts a fresh pwsh like the one running this script (dotnet tool or global).
function Get-PwshCommand {
    $exe = [Environment]::ProcessPath
    if ((Split-Path $exe -Leaf) -like 'dotnet*') { return @($exe, (Join-Path $PSHOME 'pwsh.dll')) }
    return @($exe)
}

# Runs a script file in a fresh pwsh (-NoProfile) and returns its exit code; output goes to the host.
function Invoke-ChildPwsh([string] $File, [string[]] $Arguments = @()) {
    $cmd = Get-PwshCommand
    $rest = @($cmd | Select-Object -Skip 1)
    & $cmd[0] @rest -NoProfile -NonInteractive -File $File @Arguments | Out-Host
    return $LASTEXITCODE
}

function Invoke-Native([string] $Exe, [string[]] $Arguments) {
    & $Exe @Arguments | Out-Host
    if ($LASTEXITCODE -ne 0) { throw "$Exe $($Arguments -join ' ') failed with exit code $LASTEXITCODE" }
}

function Invoke-BuildTask {
    Write-Step "Build ($Configuration)"
    Invoke-Native $Dotnet @('build', (Join-Path $Root 'src/LeakTools/LeakTools.csproj'), '-c', $Configuration, '-nologo', '-v', 'q', '-clp:ErrorsOnly')

    Write-Step "Stage module at $ModuleOut"
    if (Test-Path $ModuleOut) { Remove-Item $ModuleOut -Recurse -Force }
    $null = New-Item -ItemType Directory -Path $ModuleOut -Force
    $bin = Join-Path $Root "src/LeakTools/bin/$Configuration/net8.0"
    Get-ChildItem $bin -File | Where-Object { $_.Extension -in '.dll', '.json' -and ($_.Name -notlike '*.runtimeconfig.json' -or $_.Name -eq 'LeakTools.Host.runtimeconfig.json') } |
        Copy-Item -Destination $ModuleOut
    # Native assets of packages (runtimes/<rid>/native) travel with the dlls: linux-x64 only, the
    # one platform the agent is built for (SQLite ships 14 others).
    $nativeX64 = Join-Path $bin 'runtimes/linux-x64'
    if (Test-Path $nativeX64) {
        $null = New-Item -ItemType Directory -Path (Join-Path $ModuleOut 'runtimes') -Force
        Copy-Item $nativeX64 -Destination (Join-Path $ModuleOut 'runtimes') -Recurse
    }
    Copy-ReadyToRunImage $bin $ModuleOut
    # The manifest names its format and types files under module/, as in the repository, so the
    # repo-root manifest is valid as it stands and the staged one is the same file.
    Copy-Item (Join-Path $Root 'LeakTools.psd1') $ModuleOut
    $null = New-Item -ItemType Directory -Path (Join-Path $ModuleOut 'module') -Force
    Copy-Item (Join-Path $Root 'module/*.ps1xml') (Join-Path $ModuleOut 'module')
    Build-NativePart

    Write-Step 'Generate MAML help from docs/'
    $rc = Invoke-ChildPwsh (Join-Path $PSScriptRoot 'New-MamlHelp.ps1') @('-ModulePath', (Join-Path $ModuleOut 'LeakTools.psd1'), '-DocsPath', (Join-Path $Root 'docs'), '-OutputPath', (Join-Path $ModuleOut 'en-US'))
    if ($rc -ne 0) { throw "Help generation failed ($rc)" }
    return 0
}

# Precompiles the staged assemblies (build/ReadyToRun: ReadyToRun images for .NET 10, the runtime of
# PowerShell 7.6) and copies them over the IL ones; a runtime that cannot use an image compiles the
# IL inside it as before. Without the crossgen package (offline) the IL dlls stay, with a warning.
function Copy-ReadyToRunImage([string] $Bin, [string] $Destination) {
    Write-Step 'Precompile the assemblies (ReadyToRun)'
    $project = Join-Path $PSScriptRoot 'ReadyToRun/ReadyToRun.csproj'
    $publish = Join-Path $PSScriptRoot 'ReadyToRun/bin/publish'
    if (Test-Path $publish) { Remove-Item $publish -Recurse -Force }
    & $Dotnet publish $project -c $Configuration -nologo -v q -clp:ErrorsOnly "-p:ModuleBin=$Bin" "-p:PwshDir=$PSHOME" -o $publish | Out-Host
    if ($LASTEXITCODE -ne 0) { Write-Warning 'ReadyToRun compilation failed: the module is staged as IL only (slower first calls).'; return }
    foreach ($dll in Get-ChildItem $Destination -Filter '*.dll' -File) {
        $image = Join-Path $publish $dll.Name
        if (Test-Path $image) { Copy-Item $image $dll.FullName -Force }
    }
}

# Native parts (the in-process agent) are built here with the machine's gcc once they exist.
function Build-NativePart {
    $agentDir = Join-Path $Root 'src/LeakTools.Agent'
    $buildScript = Join-Path $agentDir 'build.ps1'
    if (Test-Path $buildScript) {
        & $buildScript -OutputPath (Join-Path $ModuleOut 'native/linux-x64') | Out-Host
    }
}

# The shared tools folder that holds PSScriptAnalyzer: ../shared/tools/modules beside the repo in
# CI; a worktree one level deeper finds it further up, and a clone of a local checkout (as
# shared/tools/fresh-clone-test makes in /tmp) beside the checkout it came from. $null when there is none.
function Find-SharedModulePath {
    $starts = @(Split-Path $Root -Parent)
    $origin = & git -C $Root config --get remote.origin.url 2>$null
    if ($origin -and (Test-Path $origin)) { $starts += Split-Path (Resolve-Path $origin).Path -Parent }
    foreach ($dir in $starts) {
        while ($dir) {
            $candidate = Join-Path $dir 'shared/tools/modules'
            if (Test-Path (Join-Path $candidate 'PSScriptAnalyzer')) { return $candidate }
            $parent = Split-Path $dir -Parent
            if ($parent -eq $dir) { break }
            $dir = $parent
        }
    }
    return $null
}

function Invoke-LintTask {
    Write-Step 'Lint (PSScriptAnalyzer -Settings PSGallery, and LeakTools'' own checks)'
    if (-not (Test-Path (Join-Path $ModuleOut 'LeakTools.psd1'))) { $null = Invoke-BuildTask }
    $shared = Find-SharedModulePath
    if ($shared -and ($env:PSModulePath -split [IO.Path]::PathSeparator) -notcontains $shared) {
        $env:PSModulePath = $shared + [IO.Path]::PathSeparator + $env:PSModulePath
    }
    $rc = Invoke-ChildPwsh (Join-Path $PSScriptRoot 'Lint.ps1') @('-Root', $Root, '-ModulePath', (Join-Path $ModuleOut 'LeakTools.psd1'))
    return $rc
}

# Reads a TRX file's counters.
function Get-TrxCount([string] $Path) {
    if (-not (Test-Path $Path)) { return [pscustomobject]@{ Passed = 0; Failed = 1; Skipped = 0; Missing = $true } }
    [xml] $trx = Get-Content -Raw $Path
    $c = $trx.TestRun.ResultSummary.Counters
    [pscustomobject]@{
        Passed  = [int]$c.passed
        Failed  = [int]$c.failed + [int]$c.error + [int]$c.timeout + [int]$c.aborted
        Skipped = [int]$c.notExecuted
        Missing = $false
    }
}

function Invoke-TestTask {
    $null = Invoke-BuildTask
    $passed = 0; $failed = 0; $skipped = 0
    $results = Join-Path $Out 'TestResults'
    if (Test-Path $results) { Remove-Item $results -Recurse -Force }

    $lint = Invoke-LintTask
    if ($lint -eq 0) { $passed++ } else { $failed++ }

    foreach ($project in 'LeakTools.Core.Tests', 'LeakTools.Tests') {
        Write-Step "xunit: $project"
        $trx = "$project.trx"
        $testArgs = @('test', (Join-Path $Root "tests/$project/$project.csproj"), '-c', $Configuration, '-nologo',
            '--logger', "trx;LogFileName=$trx", '--logger', 'console;verbosity=minimal', '--results-directory', $results)
        if ($Filter) { $testArgs += @("--filter", "FullyQualifiedName~$Filter") }
        & $Dotnet @testArgs | Out-Host
        $counts = Get-TrxCount (Join-Path $results $trx)
        if ($counts.Missing) { Write-Host "    no results from $project (build or host failure)" }
        Write-Host ("    {0}: {1} passed, {2} failed, {3} skipped" -f $project, $counts.Passed, $counts.Failed, $counts.Skipped)
        $passed += $counts.Passed; $failed += $counts.Failed; $skipped += $counts.Skipped
    }

    Write-Step 'Pester (built module in a fresh pwsh)'
    $pesterJson = Join-Path $results 'pester.json'
    $pesterArgs = @('-ModulePath', (Join-Path $ModuleOut 'LeakTools.psd1'), '-ResultPath', $pesterJson)
    if ($Filter) { $pesterArgs += @('-Filter', $Filter) }
    $null = Invoke-ChildPwsh (Join-Path $Root 'tests/Pester/Invoke-PesterTests.ps1') $pesterArgs
    if (Test-Path $pesterJson) {
        $p = Get-Content -Raw $pesterJson | ConvertFrom-Json
        Write-Host ("    Pester: {0} passed, {1} failed, {2} skipped" -f $p.Passed, $p.Failed, $p.Skipped)
        $passed += $p.Passed; $failed += $p.Failed; $skipped += $p.Skipped
    }
    else {
        Write-Host '    Pester produced no result'
        $failed++
    }

    if ($skipped -gt 0) { Write-Host "$skipped skipped" }
    Write-Host "$passed passed, $failed failed"
    if ($failed -gt 0 -or $passed -eq 0) { return 1 }
    return 0
}

function Invoke-DemoTask {
    $null = Invoke-BuildTask
    Write-Step 'Demo: LeakTools on examples/leaky-daemon.c'
    return (Invoke-ChildPwsh (Join-Path $Root 'examples/Demo.ps1') @('-ModulePath', (Join-Path $ModuleOut 'LeakTools.psd1')))
}

function Invoke-BenchTask {
    $null = Invoke-BuildTask
    $rc = 0
    foreach ($bench in Get-ChildItem (Join-Path $Root 'tests/bench') -Filter '*.bench.ps1' | Sort-Object Name) {
        if ($Filter -and $bench.Name -notlike "*$Filter*") { continue }
        Write-Step "Bench: $($bench.Name)"
        $r = Invoke-ChildPwsh $bench.FullName @('-ModulePath', (Join-Path $ModuleOut 'LeakTools.psd1'))
        if ($r -ne 0) { $rc = 1 }
    }
    return $rc
}

# A .nupkg of the staged module (out/LeakTools.<version>.nupkg) for Publish-PSResource -NupkgPath.
function Invoke-PackageTask {
    $null = Invoke-BuildTask
    $rc = Invoke-ChildPwsh (Join-Path $PSScriptRoot 'New-Package.ps1') @('-ModulePath', (Join-Path $ModuleOut 'LeakTools.psd1'), '-OutputPath', $Out)
    if ($rc -ne 0) { throw "Packaging failed ($rc)" }
    $manifest = Import-PowerShellDataFile (Join-Path $Root 'LeakTools.psd1')
    Write-Step "Packaged $(Join-Path $Out "LeakTools.$($manifest.ModuleVersion).nupkg")"
    return 0
}

function Invoke-CleanTask {
    Write-Step 'Clean'
    foreach ($dir in @($Out) + (Get-ChildItem $Root -Recurse -Directory -Include bin, obj | ForEach-Object FullName)) {
        if (Test-Path $dir) { Remove-Item $dir -Recurse -Force }
    }
    return 0
}
