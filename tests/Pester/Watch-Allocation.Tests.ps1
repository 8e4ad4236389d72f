BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:Work = Join-Path ([IO.Path]::GetTempPath()) "leaktools-pester-watch-$PID"
    $null = New-Item -ItemType Directory -Force $Work
    $script:Daemon = Join-Path $Work 'leaky-daemon'
    & gcc -O2 -g -o $Daemon (Join-Path $PSScriptRoot '../../examples/leaky-daemon.c')
    $script:Memwatch = Build-TestFixture -Source 'memwatch-memory.c' -Flags '-O0 -g' -OutputName 'pester-memwatch'
}

AfterAll {
    Remove-Item -Recurse -Force $Work -ErrorAction Ignore
}

Describe 'Watch-Allocation' {
    It 'traces a process that this pwsh started with Start-Process, and leaves it running untraced' {
        $p = Start-Process $Daemon -ArgumentList 200, 2 -PassThru -RedirectStandardOutput (Join-Path $Work 'daemon.log')
        try {
            Start-Sleep -Milliseconds 300
            $r = Watch-Allocation -Id $p.Id -Expire 1 -Duration 3
            $final = $r | Where-Object Final | Sort-Object ExpiredBytes -Descending | Select-Object -First 1
            $final.Function | Should -Be 'session_open'
            $final.Location | Should -Be 'leaky-daemon.c:33'
            $final.ExpiredCount | Should -BeGreaterThan 50
            $final.ExpiredBytes | Should -Be ($final.ExpiredCount * 16384)
            $final.Engine | Should -Be 'Breakpoint'
            ($r | Where-Object { -not $_.Final }).Count | Should -BeGreaterThan 0   # the live reports, as the last command
            (Get-Content "/proc/$($p.Id)/status" -Raw) | Should -Match 'TracerPid:\s+0\n'
            $p.HasExited | Should -BeFalse

            # memleax's report as the default view, also for deserialized objects
            $text = $final | Out-String -Width 200
            $text | Should -Match 'CallStack\[\d+\] final: \d+ blocks'
            $text | Should -Match 'session_open\(\)\+\d+ leaky-daemon.c:33'
            $clixml = Join-Path $Work 'stacks.xml'
            $final | Export-Clixml $clixml
            (Import-Clixml $clixml | Out-String -Width 200) | Should -Match 'CallStack\[\d+\] final'
            ($final | Format-Table -View Table | Out-String -Width 200) | Should -Match 'session_open\s+leaky-daemon.c:33'
        }
        finally {
            Stop-Process -Id $p.Id -ErrorAction Ignore
        }
    }

    It 'launches a program traced from its first allocation and reports bad frees and blocks never freed' {
        Push-Location $Work
        try {
            $r = Watch-Allocation -FilePath $Memwatch -InformationVariable said 6>$null
        }
        finally { Pop-Location }
        $problem = $r | Where-Object { $_ -is [LeakTools.AllocationProblem] }
        $problem.Kind | Should -Be 'DoubleFree'
        $problem.Location | Should -Be 'memwatch-memory.c:15'
        ($problem | Out-String -Width 200) | Should -Match 'Double free of 0x[0-9a-f]+ of a 512-byte block'
        $leak = $r | Where-Object { $_ -is [LeakTools.AllocationStack] -and $_.UnfreedAtExitCount }
        $leak.Location | Should -Be 'memwatch-memory.c:11'
        ($said.MessageData -join "`n") | Should -Match 'double free'   # glibc's own words, from the program's stderr
        Remove-Item (Join-Path $Work 'core*') -ErrorAction Ignore
    }

    It 'detaches cleanly when the pwsh running it is killed (<Signal>)' -ForEach @(@{ Signal = 'TERM' }, @{ Signal = 'KILL' }) {
        $p = Start-Process $Daemon -ArgumentList 200, 2 -PassThru -RedirectStandardOutput (Join-Path $Work "daemon-$Signal.log")
        $pwsh = Get-PwshCommand
        $script = "Import-Module '$(Get-TestModulePath)'; Watch-Allocation -Id $($p.Id) -Expire 1 | Out-Null"
        $rest = @($pwsh | Select-Object -Skip 1) + @('-NoProfile', '-NonInteractive', '-Command', $script)
        $child = Start-Process $pwsh[0] -ArgumentList $rest -PassThru -RedirectStandardOutput (Join-Path $Work "pwsh-$Signal.log")
        try {
            $deadline = (Get-Date).AddSeconds(60)
            while ((Get-Content "/proc/$($p.Id)/status" -Raw) -match 'TracerPid:\s+0\n' -and (Get-Date) -lt $deadline) { Start-Sleep -Milliseconds 100 }
            (Get-Content "/proc/$($p.Id)/status" -Raw) | Should -Match 'TracerPid:\s+[1-9]'
            Start-Sleep -Milliseconds 500
            & kill "-$Signal" $child.Id
            $deadline = (Get-Date).AddSeconds(30)
            while ((Get-Content "/proc/$($p.Id)/status" -Raw) -match 'TracerPid:\s+[1-9]' -and (Get-Date) -lt $deadline) { Start-Sleep -Milliseconds 100 }
            (Get-Content "/proc/$($p.Id)/status" -Raw) | Should -Match 'TracerPid:\s+0\n'
            Start-Sleep -Milliseconds 500
            $p.HasExited | Should -BeFalse   # its allocator runs without us: no leftover jump or trap
        }
        finally {
            Stop-Process -Id $p.Id -ErrorAction Ignore
            Stop-Process -Id $child.Id -ErrorAction Ignore
        }
    }

    It 'fails with clear error ids' {
        { Watch-Allocation -Id 999999 -Duration 1 -ErrorAction Stop } | Should -Throw -ErrorId 'ProcessNotFound,LeakTools.Commands.WatchAllocationCommand'
        { Watch-Allocation -Id $PID -Expire 0 } | Should -Throw -ErrorId 'InvalidExpire,LeakTools.Commands.WatchAllocationCommand'
        { Watch-Allocation -Id 2 -Duration 1 -ErrorAction Stop } | Should -Throw -ErrorId 'KernelThread,LeakTools.Commands.WatchAllocationCommand'
    }
}
