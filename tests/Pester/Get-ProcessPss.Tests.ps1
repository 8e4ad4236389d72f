BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:ModulePath = Get-TestModulePath
    Import-Module $ModulePath -Force
    $script:Exe = Build-TestFixture -Source 'touch-memory.c' -Flags '-O0 -g' -OutputName 'pester-touch-memory'
    $script:Fixture = Start-TestFixture -Path $Exe -ArgumentList '4096'
    $script:Pwsh = Get-PwshCommand
}

AfterAll {
    $Fixture | Stop-TestFixture
}

Describe 'Get-ProcessPss' {
    It 'measures the touched memory of a live fixture' {
        $m = Get-ProcessPss -Id $Fixture.Pid
        $m.PSObject.TypeNames[0] | Should -Be 'LeakTools.ProcessMemory'
        $m.Uss | Should -BeGreaterOrEqual (4096KB - 4KB)
        $m.Pss | Should -BeGreaterOrEqual $m.Uss
        $m.Rss | Should -BeGreaterOrEqual $m.Pss
        $m.Source | Should -Be 'smaps_rollup'
        $m.PID | Should -Be $Fixture.Pid   # alias from the types file
    }

    It 'finds the fixture by name and pipes into Get-ProcessMemoryMap' {
        $maps = Get-ProcessPss pester-touch-memory | Where-Object Id -eq $Fixture.Pid | Get-ProcessMemoryMap
        $maps | Where-Object { $_.Address -eq [Convert]::ToUInt64($Fixture.Values.addr.Substring(2), 16) } | Should -HaveCount 1
    }

    It 'throws ProcessNotFound with -ErrorAction Stop' {
        { Get-ProcessPss -Id 999998 -ErrorAction Stop } | Should -Throw -ErrorId 'ProcessNotFound,LeakTools.Commands.GetProcessPssCommand'
        { Get-ProcessPss -Name 'no-such-daemon' -ErrorAction Stop } | Should -Throw -ErrorId 'ProcessNotFound,LeakTools.Commands.GetProcessPssCommand'
    }

    It 'falls back to summing smaps when smaps_rollup is unavailable (LEAKTOOLS_NO_SMAPS_ROLLUP=1)' {
        $env:LEAKTOOLS_NO_SMAPS_ROLLUP = '1'
        try {
            $script = "Import-Module '$ModulePath'; `$m = Get-ProcessPss -Id $($Fixture.Pid); '{0} {1} {2}' -f `$m.Source, `$m.Uss, [bool](`$null -eq `$m.PssAnon)"
            $out = & $Pwsh[0] @($Pwsh | Select-Object -Skip 1) -NoProfile -Command $script
        }
        finally { Remove-Item Env:LEAKTOOLS_NO_SMAPS_ROLLUP }
        $source, $uss, $noPssAnon = "$out".Trim().Split(' ')
        $source | Should -Be 'smaps'
        [long]$uss | Should -BeGreaterOrEqual (4096KB - 4KB)
        $noPssAnon | Should -Be 'True'
    }

    # This kernel lets CAP_SYS_PTRACE, CAP_SYS_ADMIN or CAP_PERFMON read another user's smaps: drop all three.
    It 'reports AccessDenied, not zeros, for another user''s process without CAP_SYS_PTRACE' -Skip:(-not (Get-Command setpriv -ErrorAction Ignore) -or (id -u) -ne '0') {
        $other = Start-TestFixture -Path $Exe -ArgumentList '64' -Wrapper @('setpriv', '--reuid=65534', '--regid=65534', '--clear-groups')
        try {
            $script = "Import-Module '$ModulePath'; try { Get-ProcessPss -Id $($other.Pid) -ErrorAction Stop; 'NO ERROR' } catch { `$_.FullyQualifiedErrorId; `$_.CategoryInfo.Category; `$_.TargetObject; `$_.Exception.Message }"
            $out = & setpriv --bounding-set=-sys_ptrace,-sys_admin,-perfmon -- $Pwsh[0] @($Pwsh | Select-Object -Skip 1) -NoProfile -Command $script
        }
        finally { $other | Stop-TestFixture }
        $out[0] | Should -Be 'AccessDenied,LeakTools.Commands.GetProcessPssCommand'
        $out[1] | Should -Be 'PermissionDenied'
        $out[2] | Should -Be "$($other.Pid)"
        $out[3] | Should -Match 'CAP_SYS_PTRACE'
    }

    It 'renders its table view in a fresh pwsh, also after Import-Clixml' {
        $xml = Join-Path $TestDrive 'pss.xml'
        Get-ProcessPss -Id $Fixture.Pid | Export-Clixml $xml
        $text = Import-Clixml $xml | Out-String -Width 200
        $text | Should -Match 'PSS\(MiB\)'
        $text | Should -Match 'pester-touch-memory'
    }
}
