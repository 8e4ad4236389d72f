BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:Work = Join-Path ([IO.Path]::GetTempPath()) "leaktools-pester-watch-$PID"
    $null = New-Item -ItemType Directory -Force $Work
    $script:Daemon = Join-Path $Work 'leaky-daemon'
    & gcc -O2 -g -o $Daemon (Join-Path $PSScriptRoot '../../examples/leaky-daemon.c')
    $script:Memwatch = Build-TestFixture -Source 'memwatch-memory.c' -Flags '-O0 -g' -OutputName 'pester-memwatch'
    $script:Bench = Build-TestFixture -Source 'alloc-bench.c' -Flags '-O2 -g' -OutputName 'pester-alloc-bench'

    # An engine watches the process: a ptrace tracer holds it (breakpoint engine), or the agent is
    # mapped and the injection's hold is over (agent).
    function Test-Watched([int] $Id) {
        $status = Get-Content "/proc/$Id/status" -Raw
        if ($status -match 'TracerPid:\s+[1-9]') { return $true }
        return (Get-Content "/proc/$Id/maps" -Raw) -match 'libleaktools-agent\.so'
    }
    function Wait-Watched([int] $Id) {
        $deadline = (Get-Date).AddSeconds(60)
        while (-not (Test-Watched $Id) -and (Get-Date) -lt $deadline) { Start-Sleep -Milliseconds 50 }
        Test-Watched $Id
    }

    # Watch-Allocation -Id in a pwsh of its own (to be killed), output into $Log.
    function Start-WatchingPwsh {
        [Diagnostics.CodeAnalysis.SuppressMessageAttribute('PSUseShouldProcessForStateChangingFunctions', '', Justification = 'starts a pwsh the test owns')]
        param([int] $Id, [string] $Engine, [string] $Log)
        $pwsh = Get-PwshCommand
        $script = "Import-Module '$(Get-TestModulePath)'; Watch-Allocation -Id $Id -Expire 1 -Engine $Engine | Out-Null"
        $rest = @($pwsh | Select-Object -Skip 1) + @('-NoProfile', '-NonInteractive', '-Command', $script)
        Start-Process $pwsh[0] -ArgumentList $rest -PassThru -RedirectStandardOutput $Log
    }

    # The LeakTools helper process a pwsh started (its child running LeakTools.Host).
    function Get-Helper([int] $ParentId) {
        Get-ChildItem /proc -Directory | Where-Object { $_.Name -match '^\d+$' } | Where-Object {
            ((Get-Content "$($_.FullName)/stat" -Raw -ErrorAction Ignore) -match "^\d+ \(.*\) \S $ParentId ") -and
            ((Get-Content "$($_.FullName)/cmdline" -Raw -ErrorAction Ignore) -match 'LeakTools')
        } | Select-Object -First 1 | ForEach-Object { [int]$_.Name }
    }
}

AfterAll {
    Remove-Item -Recurse -Force $Work -ErrorAction Ignore
}

Describe 'Watch-Allocation' {
    It 'traces a process that this pwsh started with Start-Process, and leaves it running untraced (<Engine>)' -ForEach @(@{ Engine = 'Agent' }, @{ Engine = 'Breakpoint' }) {
        $p = Start-Process $Daemon -ArgumentList 200, 2 -PassThru -RedirectStandardOutput (Join-Path $Work "daemon-$Engine.log")
        try {
            Start-Sleep -Milliseconds 300
            $r = Watch-Allocation -Id $p.Id -Expire 1 -Duration 3 -Engine $Engine
            $final = $r | Where-Object Final | Sort-Object ExpiredBytes -Descending | Select-Object -First 1
            $final.Function | Should -Be 'session_open'
            $final.Location | Should -Be 'leaky-daemon.c:33'
            $final.ExpiredCount | Should -BeGreaterThan 50
            $final.ExpiredBytes | Should -Be ($final.ExpiredCount * 16384)
            $final.Engine | Should -Be $Engine
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

    It 'launches a program traced from its first allocation and reports bad frees and blocks never freed (<Engine>)' -ForEach @(@{ Engine = 'Agent' }, @{ Engine = 'Breakpoint' }) {
        Push-Location $Work
        try {
            $r = Watch-Allocation -FilePath $Memwatch -Engine $Engine -InformationVariable said 6>$null
        }
        finally { Pop-Location }
        $problem = $r | Where-Object { $_ -is [LeakTools.AllocationProblem] }
        $problem.Kind | Should -Be 'DoubleFree'
        $problem.Engine | Should -Be $Engine
        $problem.Location | Should -Be 'memwatch-memory.c:15'
        ($problem | Out-String -Width 200) | Should -Match 'Double free of 0x[0-9a-f]+ of a 512-byte block'
        $leak = $r | Where-Object { $_ -is [LeakTools.AllocationStack] -and $_.UnfreedAtExitCount }
        $leak.Location | Should -Be 'memwatch-memory.c:11'
        ($said.MessageData -join "`n") | Should -Match 'double free'   # glibc's own words, from the program's stderr
        Remove-Item (Join-Path $Work 'core*') -ErrorAction Ignore
    }

    It 'launches a program with the agent by default and reports, at its exit, the blocks never freed' {
        $r = Watch-Allocation -FilePath $Daemon -ArgumentList 200, 2 -Expire 0.5 -Duration 2 -WarningVariable warned -InformationVariable said 6>$null
        $warned | Should -BeNullOrEmpty   # no fallback
        $r | Where-Object { $_ -is [LeakTools.AllocationProblem] } | Should -BeNullOrEmpty   # every free checked, none bad
        $leak = $r | Where-Object { $_.Final -and $_.Function -eq 'session_open' -and $_.Location -eq 'leaky-daemon.c:33' }
        $leak.Engine | Should -Be 'Agent'
        $leak.UnfreedAtExitCount | Should -BeGreaterThan 50   # -Duration ends it with SIGINT: it exits through exit()
        $leak.UnfreedAtExitBytes | Should -Be ($leak.UnfreedAtExitCount * 16384)
        $leak.ExpiredCount | Should -BeGreaterThan 0
        ($said.MessageData -join "`n") | Should -Match 'handled \d+ requests'
    }

    It 'samples with -SampleInterval and marks the counts as estimates' {
        $p = Start-Process $Daemon -ArgumentList 400, 1 -PassThru -RedirectStandardOutput (Join-Path $Work 'daemon-sampled.log')
        try {
            $r = Watch-Allocation -Id $p.Id -Expire 0.5 -Duration 3 -SampleInterval 64KB
            $leak = $r | Where-Object { $_.Final -and $_.Function -eq 'session_open' -and $_.Location -eq 'leaky-daemon.c:33' }
            $leak.Estimated | Should -BeTrue
            $leak.SampleInterval | Should -Be 65536
            # ~400 leaked 16 KiB blocks a second, each sampled with P = 1 - exp(-1/4) ~ 0.22: the estimate is near the truth
            $leak.ExpiredBytes | Should -BeGreaterThan (400 * 16384 * 0.5)
            ($leak | Out-String -Width 200) | Should -Match 'estimates: one allocation sampled per 64.0 KiB'
        }
        finally { Stop-Process -Id $p.Id -ErrorAction Ignore }
    }

    It 'falls back to the breakpoint engine, with a warning, where the agent cannot go (a static binary)' {
        $static = Build-TestFixture -Source 'alloc-bench.c' -Flags '-O2 -g -static' -OutputName 'pester-alloc-bench-static'
        $p = Start-Process $static -ArgumentList 1, 1000, 20000, 20000 -PassThru -RedirectStandardOutput (Join-Path $Work 'static.log')
        try {
            Start-Sleep -Milliseconds 200
            { Watch-Allocation -Id $p.Id -Engine Agent -Duration 1 -ErrorAction Stop } | Should -Throw -ErrorId 'AgentUnavailable,LeakTools.Commands.WatchAllocationCommand'
            $null = Watch-Allocation -Id $p.Id -Expire 30 -WarningVariable warned 3>$null   # until it exits
            ($warned -join "`n") | Should -Match 'statically linked.*breakpoint engine'
            $p.WaitForExit(60000) | Should -BeTrue
            (Get-Content (Join-Path $Work 'static.log') -Raw) | Should -Match 'tight [0-9.]+ \d+'
        }
        finally { Stop-Process -Id $p.Id -ErrorAction Ignore }
    }

    It 'kill -9 of pwsh and its helper mid-session: the agent unhooks itself, the program ends as untraced' {
        $arguments = '1.5', '20000', '3000000', '30000000', '12'
        $plain = & $Bench @arguments
        $plainExit = $LASTEXITCODE
        $log = Join-Path $Work 'bench-killed.log'
        $p = Start-Process $Bench -ArgumentList $arguments -PassThru -RedirectStandardOutput $log
        $child = Start-WatchingPwsh -Id $p.Id -Engine 'Agent' -Log (Join-Path $Work 'pwsh-killed.log')
        try {
            Wait-Watched $p.Id | Should -BeTrue
            Start-Sleep -Milliseconds 500   # the work phase runs, hooked
            $helper = Get-Helper $child.Id
            $helper | Should -Not -BeNullOrEmpty
            & kill -KILL $child.Id $helper   # the controller vanishes without a word
            $p.WaitForExit(120000) | Should -BeTrue
            $p.ExitCode | Should -Be $plainExit
            $traced = Get-Content $log
            foreach ($phase in 'idle', 'work', 'tight') {
                ($traced -match "^$phase ") -replace '^\S+ \S+ ', '' | Should -Be (($plain -match "^$phase ") -replace '^\S+ \S+ ', '')
            }
        }
        finally {
            Stop-Process -Id $p.Id -ErrorAction Ignore
            Stop-Process -Id $child.Id -ErrorAction Ignore
        }
    }

    It 'detaches cleanly when the pwsh running it is killed (<Engine>, <Signal>)' -ForEach @(
        @{ Engine = 'Breakpoint'; Signal = 'TERM' }, @{ Engine = 'Breakpoint'; Signal = 'KILL' }, @{ Engine = 'Agent'; Signal = 'KILL' }) {
        $p = Start-Process $Daemon -ArgumentList 200, 2 -PassThru -RedirectStandardOutput (Join-Path $Work "daemon-$Engine-$Signal.log")
        $child = Start-WatchingPwsh -Id $p.Id -Engine $Engine -Log (Join-Path $Work "pwsh-$Engine-$Signal.log")
        try {
            Wait-Watched $p.Id | Should -BeTrue
            Start-Sleep -Milliseconds 500
            $helper = Get-Helper $child.Id
            $helper | Should -Not -BeNullOrEmpty
            & kill "-$Signal" $child.Id
            # the helper sees its input close, detaches (breakpoint engine) or tells the agent to unhook, and ends
            $deadline = (Get-Date).AddSeconds(30)
            while ((Test-Path "/proc/$helper") -and (Get-Date) -lt $deadline) { Start-Sleep -Milliseconds 100 }
            Test-Path "/proc/$helper" | Should -BeFalse
            (Get-Content "/proc/$($p.Id)/status" -Raw) | Should -Match 'TracerPid:\s+0\n'
            Start-Sleep -Milliseconds 500
            $p.HasExited | Should -BeFalse   # its allocator runs without us: no leftover jump, trap or hook
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

    # This kernel lets CAP_SYS_PTRACE, CAP_SYS_ADMIN or CAP_PERFMON reach another user's process: drop all three.
    It 'reports PermissionDenied for another user''s process without CAP_SYS_PTRACE, and leaves it alone' -Skip:(-not (Get-Command setpriv -ErrorAction Ignore) -or (id -u) -ne '0') {
        $exe = Build-TestFixture -Source 'touch-memory.c' -Flags '-O0 -g' -OutputName 'pester-touch-nobody'
        $other = Start-TestFixture -Path $exe -ArgumentList '64' -Wrapper @('setpriv', '--reuid=65534', '--regid=65534', '--clear-groups')
        try {
            $pwsh = Get-PwshCommand
            $script = "Import-Module '$(Get-TestModulePath)'; try { Watch-Allocation -Id $($other.Pid) -Duration 1 -ErrorAction Stop; 'NO ERROR' } catch { `$_.FullyQualifiedErrorId; `$_.CategoryInfo.Category; `$_.Exception.Message }"
            $out = & setpriv --bounding-set=-sys_ptrace,-sys_admin,-perfmon -- $pwsh[0] @($pwsh | Select-Object -Skip 1) -NoProfile -Command $script
            $out[0] | Should -BeLike '*,LeakTools.Commands.WatchAllocationCommand'
            $out[1] | Should -Be 'PermissionDenied'
            $out[2] | Should -Match 'CAP_SYS_PTRACE'
            (Get-Content "/proc/$($other.Pid)/status" | Select-String '^TracerPid:\s+(\d+)').Matches[0].Groups[1].Value | Should -Be '0'
            $other.Process.HasExited | Should -BeFalse
        }
        finally { $other | Stop-TestFixture }
    }
}
