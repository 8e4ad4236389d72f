BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:ModulePath = Get-TestModulePath
    Import-Module $ModulePath -Force
    $script:Work = Join-Path ([IO.Path]::GetTempPath()) "leaktools-pester-leaks-$PID"
    $null = New-Item -ItemType Directory -Force $Work
    $exe = Build-TestFixture -Source 'heap-leaks.cpp' -Flags '-O0 -g -Wl,--no-as-needed -lstdc++' -OutputName 'pester-heap-leak'
    $script:Manifest = Join-Path $Work 'manifest.txt'
    $script:Fixture = Start-TestFixture -Path $exe -ArgumentList $Manifest
    $script:Leaks = @(Get-Content $Manifest | Where-Object { $_ -like 'LEAK *' })
}

AfterAll {
    $Fixture | Stop-TestFixture
    Remove-Item -Recurse -Force $Work -ErrorAction Ignore
}

Describe 'Find-LeakedAllocation' {
    It 'finds what a process started from this pwsh leaked, and the summary a user reaches for works' {
        $p = Get-Process -Id $Fixture.Pid
        $found = @($p | Find-LeakedAllocation)
        $found.Count | Should -Be $Leaks.Count
        $found[0].PSObject.TypeNames[0] | Should -Be 'LeakTools.LeakedAllocation'
        $expected = $Leaks | ForEach-Object { $f = $_ -split ' '; '{0} {1}' -f ([Convert]::ToUInt64($f[1].Substring(2), 16)), $f[3] } | Sort-Object
        $found | ForEach-Object { '{0} {1}' -f $_.Address, $_.Size } | Sort-Object | Should -Be $expected
        $groups = $found | Group-Object Size, TypeName | Sort-Object Count -Descending
        ($groups | Measure-Object Count -Sum).Sum | Should -Be $Leaks.Count
        $groups.Name | Should -Contain '72, Circle'
    }

    It 'reads a core by path, positionally and from Invoke-CoreCapture, and exports to CSV' {
        $core = Invoke-CoreCapture -Id $Fixture.Pid -Destination $Work
        @(Find-LeakedAllocation $core.Path -Kind Unreferenced).Count | Should -Be @($Leaks | Where-Object { $_ -like '* Unreferenced*' }).Count
        $csv = Join-Path $Work 'leaks.csv'
        $core | Find-LeakedAllocation | Export-Csv $csv
        $rows = Import-Csv $csv
        $rows.Count | Should -Be $Leaks.Count
        ($rows | Where-Object TypeName -eq Circle).Kind | Should -Be 'Unreferenced'
    }

    It 'refuses what is not a core with a stable error id' {
        { Find-LeakedAllocation -Path $PSCommandPath -ErrorAction Stop } | Should -Throw -ErrorId 'NotACore,LeakTools.Commands.FindLeakedAllocationCommand'
        { Find-LeakedAllocation -Path (Join-Path $Work 'missing') -ErrorAction Stop } | Should -Throw -ErrorId 'CoreNotFound,LeakTools.Commands.FindLeakedAllocationCommand'
        { Find-LeakedAllocation -Id 999999 -ErrorAction Stop } | Should -Throw -ErrorId 'ProcessNotFound,LeakTools.Commands.FindLeakedAllocationCommand'
    }
}
