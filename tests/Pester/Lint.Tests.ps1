# build/Lint.ps1 runs PSScriptAnalyzer (-Settings PSGallery) and fails on a finding; the repo-root
# manifest is valid as it stands.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:ModulePath = Get-TestModulePath
    $script:Root = Split-Path (Split-Path $PSScriptRoot -Parent) -Parent
}

Describe 'Lint' {
    It 'the repo-root manifest resolves every file it names from the repository' {
        $null = Test-ModuleManifest (Join-Path $Root 'LeakTools.psd1') -ErrorAction SilentlyContinue -ErrorVariable problems
        # LeakTools.dll (RootModule) is the build's output, present in the staged copy only.
        @($problems | Where-Object FullyQualifiedErrorId -NotLike 'Modules_InvalidRootModuleInModuleManifest,*') | Should -BeNullOrEmpty
        $data = Import-PowerShellDataFile (Join-Path $Root 'LeakTools.psd1')
        foreach ($f in @($data.FormatsToProcess) + @($data.TypesToProcess)) {
            Join-Path $Root $f | Should -Exist
            Join-Path (Split-Path $ModulePath -Parent) $f | Should -Exist
        }
        $data.PrivateData.PSData.ProjectUri | Should -Not -BeNullOrEmpty
        $data.PrivateData.PSData.ReleaseNotes | Should -Not -BeNullOrEmpty
    }

    It 'fails on a PSScriptAnalyzer finding and names it' {
        $shared = Join-Path $Root '../shared/tools/modules'
        if (-not (Test-Path $shared)) { $shared = Join-Path $Root '../../shared/tools/modules' }
        if (-not (Test-Path (Join-Path $shared 'PSScriptAnalyzer/1.25.0'))) { Set-ItResult -Skipped -Because 'PSScriptAnalyzer 1.25.0 is not in ../shared/tools/modules'; return }
        $fake = Join-Path $TestDrive 'repo'
        $null = New-Item -ItemType Directory -Force (Join-Path $fake 'build')
        Set-Content (Join-Path $fake 'build/Helpers.ps1') 'function Get-Widgets { $unused = 1; "widgets" }'
        $pwsh = Get-PwshCommand
        $rest = @($pwsh | Select-Object -Skip 1) + @('-NoProfile', '-NonInteractive', '-File', (Join-Path $Root 'build/Lint.ps1'), '-Root', $fake, '-ModulePath', $ModulePath)
        $saved = $env:PSModulePath
        try {
            $env:PSModulePath = (Resolve-Path $shared).Path + [IO.Path]::PathSeparator + $env:PSModulePath
            $output = & $pwsh[0] @rest 2>&1
            $rc = $LASTEXITCODE
        }
        finally { $env:PSModulePath = $saved }
        $rc | Should -Be 1
        ($output -join "`n") | Should -Match 'PSScriptAnalyzer PSUseSingularNouns \(Warning\) .*Helpers\.ps1:1'
        ($output -join "`n") | Should -Match 'PSScriptAnalyzer PSUseDeclaredVarsMoreThanAssignments'
    }
}
