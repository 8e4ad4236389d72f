# The package round trip as a user does it: build/New-Package.ps1 (what build.ps1 Package runs) packs
# the staged module, Publish-PSResource pushes it to a file repository, Install-PSResource installs
# it by name, Import-Module LeakTools loads it. Everything happens in a pwsh whose HOME is a temp
# folder (its repository list and CurrentUser module path live there); the repository is registered
# under a unique name and unregistered afterwards.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:ModulePath = Get-TestModulePath
    $script:Root = Split-Path (Split-Path $PSScriptRoot -Parent) -Parent
    $script:TempHome = Join-Path $TestDrive 'home'
    $script:Feed = Join-Path $TestDrive 'feed'
    $null = New-Item -ItemType Directory -Force $TempHome, $Feed

    # Runs a script in a fresh pwsh with HOME set to the temp home; returns its output lines.
    function Invoke-InTempHome([string] $Script) {
        $pwsh = Get-PwshCommand
        $rest = @($pwsh | Select-Object -Skip 1) + @('-NoProfile', '-NonInteractive', '-Command', $Script)
        $saved = @{ HOME = $env:HOME; XDG_DATA_HOME = $env:XDG_DATA_HOME; XDG_CONFIG_HOME = $env:XDG_CONFIG_HOME; PSModulePath = $env:PSModulePath }
        try {
            $env:HOME = $TempHome
            $env:XDG_DATA_HOME = $null
            $env:XDG_CONFIG_HOME = $null
            $env:PSModulePath = Join-Path $PSHOME 'Modules'
            # Its working folder too: NuGet writes a NuGet/NuGet.Config there when HOME has none.
            Push-Location $TestDrive
            try { $output = & $pwsh[0] @rest 2>&1 }
            finally { Pop-Location }
            $global:LASTEXITCODE | Should -Be 0 -Because ($output -join "`n")
            $output
        }
        finally {
            foreach ($k in $saved.Keys) { Set-Item "env:$k" $saved[$k] }
        }
    }
    $script:Installed = Join-Path $TempHome '.local/share/powershell/Modules/LeakTools'
}

Describe 'LeakTools package' {
    It 'packs, publishes to a file repository, installs by name and imports with the natives executable' {
        $nupkg = & (Join-Path $Root 'build/New-Package.ps1') -ModulePath $ModulePath -OutputPath (Join-Path $TestDrive 'pkg')
        $nupkg.Name | Should -BeLike 'LeakTools.*.nupkg'
        $realRepositories = Join-Path ([Environment]::GetFolderPath('LocalApplicationData')) 'PSResourceGet/PSResourceRepository.xml'
        $before = if (Test-Path $realRepositories) { Get-Content -Raw $realRepositories }

        $repo = 'LeakToolsTest' + [guid]::NewGuid().ToString('n').Substring(0, 8)
        Invoke-InTempHome @"
`$ErrorActionPreference = 'Stop'
Register-PSResourceRepository -Name '$repo' -Uri '$Feed' -Trusted
try {
    Publish-PSResource -NupkgPath '$($nupkg.FullName)' -Repository '$repo'
    Install-PSResource -Name LeakTools -Repository '$repo' -Scope CurrentUser -TrustRepository
}
finally { Unregister-PSResourceRepository -Name '$repo' }
if (Get-PSResourceRepository -Name '$repo' -ErrorAction Ignore) { throw 'repository still registered' }
"@ | Out-Null
        Get-ChildItem $Feed -Filter 'LeakTools.*.nupkg' | Should -HaveCount 1
        $version = (Import-PowerShellDataFile $ModulePath).ModuleVersion
        $base = Join-Path $Installed $version
        $agent = Join-Path $base 'native/linux-x64/libleaktools-agent.so'
        $agent | Should -Exist
        # Only the linux-x64 natives travel.
        @(Get-ChildItem (Join-Path $base 'runtimes') -Directory).Name | Should -Be @('linux-x64')
        $size = (Get-ChildItem $base -Recurse -File | Measure-Object Length -Sum).Sum
        Write-Host "    installed size: $([math]::Round($size / 1MB, 1)) MiB; agent mode after install: $((Get-Item $agent).UnixMode)"

        $said = Invoke-InTempHome @'
$ErrorActionPreference = 'Stop'
Import-Module LeakTools
$m = Get-Module LeakTools
"base=$($m.ModuleBase)"
"commands=$(@(Get-Command -Module LeakTools).Count)"
"pss=$((Get-ProcessPss -Id $PID).Id -eq $PID)"
"agent=$((Get-Item (Join-Path $m.ModuleBase 'native/linux-x64/libleaktools-agent.so')).UnixMode)"
'@
        $said | Should -Contain "base=$base"
        $said | Should -Contain "commands=$(@((Import-PowerShellDataFile $ModulePath).CmdletsToExport).Count)"
        $said | Should -Contain 'pss=True'
        $said | Should -Contain 'agent=-rwxr-xr-x'
        (Get-Item $agent).UnixMode | Should -Be '-rwxr-xr-x'
        (Get-Item (Join-Path $base 'runtimes/linux-x64/native/libe_sqlite3.so')).UnixMode | Should -Be '-rwxr-xr-x'

        # The real user's repository list is untouched.
        $after = if (Test-Path $realRepositories) { Get-Content -Raw $realRepositories }
        $after | Should -Be $before
    }

    It 'restores execute bits the zip lost, when the module is imported' {
        $copy = Join-Path $TestDrive 'copy/LeakTools'
        Copy-Item (Split-Path $ModulePath -Parent) $copy -Recurse
        $agent = Join-Path $copy 'native/linux-x64/libleaktools-agent.so'
        & chmod 0644 $agent
        (Get-Item $agent).UnixMode | Should -Be '-rw-r--r--'
        $pwsh = Get-PwshCommand
        $rest = @($pwsh | Select-Object -Skip 1) + @('-NoProfile', '-NonInteractive', '-Command', "Import-Module '$copy/LeakTools.psd1'")
        & $pwsh[0] @rest
        (Get-Item $agent).UnixMode | Should -Be '-rwxr-xr-x'
    }
}
