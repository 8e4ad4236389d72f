# Watch-ProcessMemory and Measure-MemoryTrend on live fixtures that grow ~1 MiB/s, stay flat and
# saw: one 15 s watch at 0.5 s samples all three at once (so the file takes ~15 s, not 45), then
# the verdicts are checked live and through Export-Csv / Import-Csv.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:Exe = Build-TestFixture -Source 'memory-pattern.c' -OutputName 'pester-memory-pattern'
}

Describe 'Watch-ProcessMemory | Measure-MemoryTrend on growing, flat and sawtooth fixtures' {
    BeforeAll {
        $script:Grow = Start-TestFixture -Path $Exe -ArgumentList 'grow', '1024'
        $script:Flat = Start-TestFixture -Path $Exe -ArgumentList 'flat', '8192'
        $script:Saw = Start-TestFixture -Path $Exe -ArgumentList 'sawtooth', '8192', '2000'
        try {
            $script:Samples = @(Watch-ProcessMemory -Id $Grow.Pid, $Flat.Pid, $Saw.Pid -Interval 0.5 -Duration 15)
        }
        finally {
            $Grow, $Flat, $Saw | Stop-TestFixture
        }
        $script:Csv = Join-Path $TestDrive 'samples.csv'
        $Samples | Export-Csv -Path $Csv
        $script:Live = @($Samples | Measure-MemoryTrend)
        $script:FromCsv = @(Import-Csv -Path $Csv | Measure-MemoryTrend)
        function script:TrendOf($Trends, $Fixture) { $Trends | Where-Object Id -eq $Fixture.Pid }
    }

    It 'samples each process at every half-second tick of the 15 s, on the clock' {
        foreach ($fx in $Grow, $Flat, $Saw) {
            $mine = @($Samples | Where-Object Id -eq $fx.Pid)
            $mine.Count | Should -Be 31
            $mine[0].PSObject.TypeNames[0] | Should -Be 'LeakTools.ProcessMemory'
            $span = ($mine[-1].Timestamp - $mine[0].Timestamp).TotalSeconds
            $span | Should -BeGreaterOrEqual 14.8
            $span | Should -BeLessOrEqual 15.5
        }
        # On a grid, not "sleep after the work": 30 gaps average 0.5 s.
        $t = @($Samples | Where-Object Id -eq $Grow.Pid | ForEach-Object Timestamp)
        $gaps = 1..($t.Count - 1) | ForEach-Object { ($t[$_] - $t[$_ - 1]).TotalSeconds }
        ($gaps | Measure-Object -Average).Average | Should -BeGreaterOrEqual 0.49
        ($gaps | Measure-Object -Average).Average | Should -BeLessOrEqual 0.52
    }

    It 'calls the 1 MiB/s leak Growing, at about 1 MiB/s' {
        $t = TrendOf $Live $Grow
        $t.Verdict | Should -Be 'Growing'
        $t.PSObject.TypeNames[0] | Should -Be 'LeakTools.MemoryTrend'
        $t.Samples | Should -Be 31
        $t.GrowthPerHour / 3600 / 1MB | Should -BeGreaterThan 0.8
        $t.GrowthPerHour / 3600 / 1MB | Should -BeLessThan 1.2
        $t.PValue | Should -BeLessThan 0.001
    }

    It 'calls the flat process Stable' {
        (TrendOf $Live $Flat).Verdict | Should -Be 'Stable'
    }

    It 'calls the sawtooth Stable although it allocates 4 MiB/s inside each tooth' {
        $t = TrendOf $Live $Saw
        $t.Verdict | Should -Be 'Stable'
        $t.Maximum - $t.Minimum | Should -BeGreaterThan 6MB   # it really saws
    }

    It 'gives the same verdicts through Export-Csv and Import-Csv' {
        foreach ($fx in $Grow, $Flat, $Saw) {
            $viaCsv = TrendOf $FromCsv $fx
            $viaPipe = TrendOf $Live $fx
            $viaCsv.Verdict | Should -Be $viaPipe.Verdict
            $viaCsv.Samples | Should -Be 31
            $viaCsv.Name | Should -Be 'pester-memory-pattern'
        }
        (TrendOf $FromCsv $Grow).GrowthPerHour / 3600 / 1MB | Should -BeGreaterThan 0.8
    }

    It 'renders its table view, also after Import-Clixml' {
        $xml = Join-Path $TestDrive 'trend.xml'
        $Live | Export-Clixml $xml
        $text = Import-Clixml $xml | Out-String -Width 200
        $text | Should -Match 'MiB/hour'
        $text | Should -Match 'Growing'
    }
}

Describe 'Watch-ProcessMemory by name' {
    It 'follows a restart: the new pid is picked up, the exited one noted' {
        $name = 'pester-restarting'
        $exe = Build-TestFixture -Source 'memory-pattern.c' -OutputName $name
        $first = Start-TestFixture -Path $exe -ArgumentList 'flat', '1024'
        # After a second, a shell kills it and starts another of the same name that lives 3 s.
        $psi = [System.Diagnostics.ProcessStartInfo]::new('/bin/sh')
        foreach ($a in '-c', "sleep 1; kill $($first.Pid); sleep 3 | '$exe' flat 2048 >/dev/null") { $psi.ArgumentList.Add($a) }
        $restart = [System.Diagnostics.Process]::Start($psi)
        try {
            $samples = @(Watch-ProcessMemory $name -Interval 0.25 -Duration 2.5 -WarningVariable warnings -WarningAction SilentlyContinue)
        }
        finally {
            $first | Stop-TestFixture
            $restart.WaitForExit(10000) | Out-Null
        }
        $pids = @($samples | Select-Object -ExpandProperty Id -Unique)
        $pids.Count | Should -Be 2
        $pids[0] | Should -Be $first.Pid
        ($samples | Where-Object Id -eq $pids[1] | Measure-Object Uss -Maximum).Maximum | Should -BeGreaterOrEqual 2MB
        "$warnings" | Should -Match "Process $($first.Pid) \(pester-restarting\) exited"
    }

    It 'a bare number is seconds' {
        $s = @(Watch-ProcessMemory -Id $PID -Interval 0.1 -Count 3)
        $s.Count | Should -Be 3
        ($s[-1].Timestamp - $s[0].Timestamp).TotalSeconds | Should -BeLessThan 1
        ($s[-1].Timestamp - $s[0].Timestamp).TotalSeconds | Should -BeGreaterOrEqual 0.15   # two 0.1 s steps, not 0.1 ticks
    }

    It 'refuses bad arguments with stable error ids' {
        { Watch-ProcessMemory -Id $PID -Interval 0 -Count 1 } | Should -Throw -ErrorId 'InvalidInterval,LeakTools.Commands.WatchProcessMemoryCommand'
        { Watch-ProcessMemory -Id $PID -Count 2 -Duration 1 } | Should -Throw -ErrorId 'CountAndDuration,LeakTools.Commands.WatchProcessMemoryCommand'
        { Watch-ProcessMemory -Name 'no-such-daemon-xyz' -Count 1 -ErrorAction Stop } | Should -Throw -ErrorId 'ProcessNotFound,LeakTools.Commands.WatchProcessMemoryCommand'
    }
}

Describe 'Measure-MemoryTrend input' {
    It 'names a missing CSV column in a terminating error' {
        $rows = 'Timestamp,Id,Name,Rss', '2026-03-01T12:00:00,1,d,100' | ConvertFrom-Csv
        { $rows | Measure-MemoryTrend -ErrorAction Stop } | Should -Throw -ErrorId 'MissingProperty,LeakTools.Commands.MeasureMemoryTrendCommand'
        try { $rows | Measure-MemoryTrend } catch { $_.Exception.Message | Should -Match "no 'Pss' property" }
        ($rows | Measure-MemoryTrend -Property Rss).Samples | Should -Be 1
    }

    It 'converts strings by property name and reports a bad value with the row' {
        $rows = @(
            0..9 | ForEach-Object { [pscustomobject]@{ Timestamp = (Get-Date '2026-03-01T12:00:00').AddSeconds($_).ToString('o'); PID = '42'; Name = 'd'; Pss = "$(1MB * $_)" } }
            [pscustomobject]@{ Timestamp = '2026-03-01T12:00:30'; PID = '42'; Name = 'd'; Pss = 'lots' }
        )
        $t = $rows | Measure-MemoryTrend -ErrorVariable bad -ErrorAction SilentlyContinue
        $t.Id | Should -Be 42
        $t.Samples | Should -Be 10
        $t.Verdict | Should -Be 'Growing'
        $bad[0].FullyQualifiedErrorId | Should -Be 'InvalidSampleValue,LeakTools.Commands.MeasureMemoryTrendCommand'
        $bad[0].TargetObject.Pss | Should -Be 'lots'
    }
}
