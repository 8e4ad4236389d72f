BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:ModulePath = Get-TestModulePath
    Import-Module $ModulePath -Force
    $script:Work = Join-Path ([IO.Path]::GetTempPath()) "leaktools-pester-heap-$PID"
    $null = New-Item -ItemType Directory -Force $Work
    $exe = Build-TestFixture -Source 'heap-leaks.cpp' -Flags '-O0 -g -Wl,--no-as-needed -lstdc++' -OutputName 'pester-heap-leak'
    $script:Fixture = Start-TestFixture -Path $exe -ArgumentList (Join-Path $Work 'manifest.txt')
}

AfterAll {
    $Fixture | Stop-TestFixture
    Remove-Item -Recurse -Force $Work -ErrorAction Ignore
}

Describe 'Get-HeapSummary' {
    It 'gives one row per arena and one for mmapped chunks, from -Id and from a core' {
        $live = @(Get-HeapSummary -Id $Fixture.Pid)
        $live.Kind | Should -Be @('Main', 'Thread', 'Thread', 'Mmapped')
        $live[0].PSObject.TypeNames[0] | Should -Be 'LeakTools.HeapSummary'
        $live[0].FastbinChunks | Should -Be 3
        $live[0].LargebinChunks | Should -Be 4
        $live[3].MmappedChunks | Should -Be 4  # three malloc, one posix_memalign
        $live[0].Core | Should -BeNullOrEmpty

        $core = Invoke-CoreCapture -Id $Fixture.Pid -Destination $Work
        $fromCore = @($core | Get-HeapSummary)
        $fromCore.UsedChunks | Should -Be $live.UsedChunks
        $fromCore[0].Core | Should -Be $core.Path
        ($fromCore | Format-Table | Out-String -Width 200) | Should -Match 'main\s+Main'
    }

    It 'refuses what is not a core with a stable error id' {
        { Get-HeapSummary -Path $PSCommandPath -ErrorAction Stop } | Should -Throw -ErrorId 'NotACore,LeakTools.Commands.GetHeapSummaryCommand'
    }
}
