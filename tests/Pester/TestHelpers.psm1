# Helpers shared by the Pester tests: the staged module path, C fixtures built with gcc, and
# fixture processes that end when their stdin closes.

$script:Root = Split-Path (Split-Path $PSScriptRoot -Parent) -Parent
$script:FixtureCache = Join-Path ([IO.Path]::GetTempPath()) 'leaktools-fixtures'

function Get-TestModulePath {
    if ($env:LEAKTOOLS_TEST_MODULE) { return $env:LEAKTOOLS_TEST_MODULE }
    return (Join-Path $script:Root 'out/LeakTools/LeakTools.psd1')
}

# Builds tests/fixtures/<Source> with gcc (cached by content and flags); returns the binary path.
function Build-TestFixture {
    param([Parameter(Mandatory)] [string] $Source, [string] $Flags = '-O0 -g', [string] $OutputName)
    $src = Join-Path $script:Root "tests/fixtures/$Source"
    $text = Get-Content -Raw $src
    $sha = [System.Security.Cryptography.SHA256]::HashData([System.Text.Encoding]::UTF8.GetBytes("$text`0$Flags"))
    $hash = ([Convert]::ToHexString($sha)).Substring(0, 16).ToLowerInvariant()
    if (-not $OutputName) { $OutputName = [IO.Path]::GetFileNameWithoutExtension($Source) }
    $dir = Join-Path $script:FixtureCache $hash
    $out = Join-Path $dir $OutputName
    if (Test-Path $out) { return $out }
    $null = New-Item -ItemType Directory -Force $dir
    & chmod 755 $script:FixtureCache $dir
    $tmp = "$out.tmp$PID"
    $flagList = @($Flags -split ' ' | Where-Object { $_ })
    & gcc @flagList -o $tmp $src -lpthread
    if ($LASTEXITCODE -ne 0) { throw "gcc $Flags $Source failed" }
    Move-Item -Force $tmp $out
    return $out
}

# Starts a fixture (optionally through a wrapper such as setpriv) and waits for its READY line.
function Start-TestFixture {
    # Starts and stops a test's own fixture: -WhatIf/-Confirm would make no sense for it.
    [Diagnostics.CodeAnalysis.SuppressMessageAttribute('PSUseShouldProcessForStateChangingFunctions', '', Justification = 'test fixture')]
    param([Parameter(Mandatory)] [string] $Path, [string[]] $ArgumentList = @(), [string[]] $Wrapper = @())
    $psi = [System.Diagnostics.ProcessStartInfo]::new($(if ($Wrapper) { $Wrapper[0] } else { $Path }))
    $psi.RedirectStandardInput = $true
    $psi.RedirectStandardOutput = $true
    $psi.RedirectStandardError = $true
    foreach ($w in @($Wrapper | Select-Object -Skip 1)) { $psi.ArgumentList.Add($w) }
    if ($Wrapper) { $psi.ArgumentList.Add($Path) }
    foreach ($a in $ArgumentList) { $psi.ArgumentList.Add($a) }
    $process = [System.Diagnostics.Process]::Start($psi)
    $task = $process.StandardOutput.ReadLineAsync()
    if (-not $task.Wait(30000) -or -not $task.Result -or -not $task.Result.StartsWith('READY')) {
        $process.Kill($true)
        throw "$Path did not become ready: $($process.StandardError.ReadToEnd())"
    }
    $values = @{}
    foreach ($pair in $task.Result.Split(' ') | Select-Object -Skip 1) {
        $k, $v = $pair.Split('=', 2)
        $values[$k] = $v
    }
    [pscustomobject]@{ Process = $process; Pid = $values['pid'] -as [int]; Values = $values }
}

function Stop-TestFixture {
    [Diagnostics.CodeAnalysis.SuppressMessageAttribute('PSUseShouldProcessForStateChangingFunctions', '', Justification = 'test fixture')]
    param([Parameter(ValueFromPipeline)] $Fixture)
    process {
        if (-not $Fixture) { return }
        $p = $Fixture.Process
        if (-not $p.HasExited) { $p.Kill($true); $null = $p.WaitForExit(10000) }
        $p.Dispose()
    }
}

# A command line that starts a fresh pwsh like this one (dotnet tool or global install).
function Get-PwshCommand {
    $exe = [Environment]::ProcessPath
    if ((Split-Path $exe -Leaf) -like 'dotnet*') { return @($exe, (Join-Path $PSHOME 'pwsh.dll')) }
    return @($exe)
}

Export-ModuleMember -Function Get-TestModulePath, Build-TestFixture, Start-TestFixture, Stop-TestFixture, Get-PwshCommand
