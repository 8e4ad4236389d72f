# A global function (and its call list) stands in for Invoke-CoreCapture in one test: a function
# made from a closure with Set-Item stayed visible to the cmdlet's command lookup after removal.
[Diagnostics.CodeAnalysis.SuppressMessageAttribute('PSAvoidGlobalVars', '', Justification = 'the stand-in for Invoke-CoreCapture must be a global function recording its calls')]
param()
# Register/Get/Unregister/Invoke-LeakMonitor and Get-MemoryHistory, all under a temporary -Root:
# the generated cron and systemd commands are run exactly, under an empty environment (env -i plus
# the variables the file sets), and must land a sample in the history.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:ModulePath = Get-TestModulePath
    Import-Module $ModulePath -Force
    $script:Exe = Build-TestFixture -Source 'memory-pattern.c' -OutputName 'pester-monitored'
    $script:Fixture = Start-TestFixture -Path $Exe -ArgumentList 'flat', '4096'
    $script:Pwsh = Get-PwshCommand

    # Runs a command line with only the given variables, as cron and systemd do.
    function script:Invoke-Empty([string[]] $Environment, [string[]] $Command) {
        $out = & env -i @Environment @Command 2>&1
        [pscustomobject]@{ ExitCode = $LASTEXITCODE; Output = "$out" }
    }

    # Words of a systemd ExecStart= line as our generator writes them ("..." with \\ \" escapes, $$ and %%).
    function script:Split-SystemdWord([string] $Line) {
        $words = [System.Collections.Generic.List[string]]::new()
        foreach ($m in [regex]::Matches($Line, '"((?:[^"\\]|\\.)*)"|(\S+)')) {
            $w = if ($m.Groups[1].Success) { [regex]::Replace($m.Groups[1].Value, '\\(.)', '$1') } else { $m.Groups[2].Value }
            $words.Add($w.Replace('$$', '$').Replace('%%', '%'))
        }
        return , $words.ToArray()
    }
}

AfterAll {
    $Fixture | Stop-TestFixture
}

Describe 'Register-LeakMonitor with cron' {
    BeforeAll {
        $script:Root = Join-Path $TestDrive 'root'
        $script:Monitor = Register-LeakMonitor 'pester-monitored' -Interval 1m -Scheduler Cron -Root $Root -WarningAction SilentlyContinue
    }

    It 'writes /etc/cron.d/leaktools-NAME under the root, with HOME, PATH and absolute paths' {
        $Monitor.PSObject.TypeNames[0] | Should -Be 'LeakTools.LeakMonitor'
        $file = Join-Path $Root 'etc/cron.d/leaktools-pester-monitored'
        $Monitor.Files | Should -Be @($file)
        $text = Get-Content -Raw $file
        $text | Should -Match "(?m)^HOME=/"
        $text | Should -Match "(?m)^PATH=/usr/local/sbin:"
        $text | Should -Match "(?m)^\* \* \* \* \* $([Environment]::UserName) /"
        $text | Should -Match ([regex]::Escape($ModulePath))
        $Monitor.History | Should -Be (Join-Path $Root 'var/lib/leaktools/pester-monitored.db')
    }

    It 'runs its exact command under an empty environment and a sample lands in the history' {
        $lines = Get-Content (Join-Path $Root 'etc/cron.d/leaktools-pester-monitored')
        $vars = @($lines | Where-Object { $_ -match '^[A-Z_]+=' })
        $job = $lines | Where-Object { $_ -match '^\* ' }
        $command = ($job -split '\s+', 7)[6] -replace '\\%', '%'
        $r = Invoke-Empty $vars @('/bin/sh', '-c', $command)
        $r.ExitCode | Should -Be 0 -Because $r.Output
        $samples = @(Get-MemoryHistory $Monitor.History)
        $samples | Where-Object Id -eq $Fixture.Pid | Should -HaveCount 1
        $samples[0].PSObject.TypeNames[0] | Should -Be 'LeakTools.ProcessMemory'
        $samples[0].Uss | Should -BeGreaterOrEqual (4MB - 4KB)
        $m = Get-LeakMonitor -Root $Root
        $m.LastStatus | Should -Be 'Ok'
        $m.LastRun | Should -BeGreaterThan (Get-Date).AddMinutes(-2)
    }

    It 'refuses a second monitor of the same name without -Force' {
        { Register-LeakMonitor 'pester-monitored' -Interval 1m -Scheduler Cron -Root $Root -ErrorAction Stop } |
            Should -Throw -ErrorId 'MonitorExists,LeakTools.Commands.RegisterLeakMonitorCommand'
        Register-LeakMonitor 'pester-monitored' -Interval 5m -Scheduler Cron -Root $Root -Force -WarningAction SilentlyContinue | Out-Null
        (Get-LeakMonitor -Root $Root).Interval | Should -Be ([timespan]'00:05:00')
    }

    It 'refuses intervals cron cannot keep' {
        { Register-LeakMonitor x -Interval 30 -Scheduler Cron -Root $Root } | Should -Throw -ErrorId 'IntervalTooShort,LeakTools.Commands.RegisterLeakMonitorCommand'
        { Register-LeakMonitor x -Interval 7m -Scheduler Cron -Root $Root } | Should -Throw -ErrorId 'IntervalNotSupported,LeakTools.Commands.RegisterLeakMonitorCommand'
        { Register-LeakMonitor x -Interval 0 -Scheduler Cron -Root $Root } | Should -Throw -ErrorId 'InvalidInterval,LeakTools.Commands.RegisterLeakMonitorCommand'
        Get-LeakMonitor x -Root $Root -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'unregisters with -WhatIf changing nothing, then for real keeping the history' {
        Unregister-LeakMonitor 'pester-monitored' -Root $Root -WhatIf
        Get-LeakMonitor -Root $Root | Should -HaveCount 1
        Get-LeakMonitor -Root $Root | Unregister-LeakMonitor -Confirm:$false
        Get-LeakMonitor -Root $Root | Should -BeNullOrEmpty
        Test-Path $Monitor.History | Should -BeTrue
        { Unregister-LeakMonitor 'pester-monitored' -Root $Root -ErrorAction Stop } | Should -Throw -ErrorId 'MonitorNotFound,LeakTools.Commands.UnregisterLeakMonitorCommand'
    }
}

Describe 'Register-LeakMonitor with systemd' {
    BeforeAll {
        $script:Root = Join-Path $TestDrive 'sd'
        $script:Monitor = Register-LeakMonitor 'pester-monitored*' -Interval 30 -Scheduler Systemd -Root $Root -History (Join-Path $TestDrive 'sd.csv') -WarningAction SilentlyContinue
        $script:Service = $Monitor.Files | Where-Object { $_ -like '*.service' }
        $script:Timer = $Monitor.Files | Where-Object { $_ -like '*.timer' -and $_ -notlike '*timers.target.wants*' }
    }

    # Unit names hold backslashes (\x2a), which PowerShell's path cmdlets take for separators on
    # Linux: these tests read the files with .NET.
    It 'writes an escaped .service + .timer pair, enabled' {
        [IO.Path]::GetFileName($Service) | Should -Be 'leaktools-monitor-pester\x2dmonitored\x2a.service'
        [IO.Path]::GetFileName($Timer) | Should -Be 'leaktools-monitor-pester\x2dmonitored\x2a.timer'
        $Monitor.Enabled | Should -BeTrue
        [IO.File]::ReadAllText($Timer) | Should -Match '(?m)^OnUnitActiveSec=30s$'
    }

    It 'passes systemd-analyze verify' -Skip:(-not (Get-Command systemd-analyze -ErrorAction Ignore)) {
        $out = & systemd-analyze verify $Service $Timer 2>&1
        $LASTEXITCODE | Should -Be 0 -Because "$out"
    }

    It 'has a timer whose service exists (verify does not check that)' {
        $unit = ([IO.File]::ReadAllLines($Timer) | Where-Object { $_ -like 'Unit=*' }).Substring(5).Replace('%%', '%')
        [IO.File]::Exists([IO.Path]::Combine([IO.Path]::GetDirectoryName($Timer), $unit)) | Should -BeTrue
        $unit | Should -Be ([IO.Path]::GetFileName($Service))
    }

    It 'runs its exact ExecStart under an empty environment and a sample lands in the CSV history' {
        $lines = [IO.File]::ReadAllLines($Service)
        $vars = @($lines | Where-Object { $_ -like 'Environment=*' } | ForEach-Object { (Split-SystemdWord $_.Substring(12))[0] })
        $argv = Split-SystemdWord ($lines | Where-Object { $_ -like 'ExecStart=*' }).Substring(10)
        $vars | Should -Contain 'HOME=/root'
        $r = Invoke-Empty $vars $argv
        $r.ExitCode | Should -Be 0 -Because $r.Output
        $rows = @(Import-Csv $Monitor.History)
        $rows | Where-Object Id -eq $Fixture.Pid | Should -HaveCount 1
        @(Get-MemoryHistory $Monitor.History -Id $Fixture.Pid) | Should -HaveCount 1
    }
}

Describe 'Invoke-LeakMonitor' {
    BeforeAll {
        $script:Grow = Start-TestFixture -Path (Build-TestFixture -Source 'memory-pattern.c' -OutputName 'pester-leaking') -ArgumentList 'grow', '2048'
        # A stand-in logger that records its arguments instead of writing to the real syslog.
        $script:LogFile = Join-Path $TestDrive 'syslog.txt'
        $script:Logger = Join-Path $TestDrive 'fake-logger'
        Set-Content $Logger "#!/bin/sh`nprintf '%s|' `"`$@`" >> '$LogFile'`necho >> '$LogFile'`n"
        chmod 755 $Logger
    }
    AfterAll { $Grow | Stop-TestFixture }

    It 'records "not running" for a name that matches nothing, with a warning and no error' {
        $db = Join-Path $TestDrive 'none.db'
        $out = Invoke-LeakMonitor 'no-such-daemon-xyz' -History $db -NoSyslog -WarningVariable w -WarningAction SilentlyContinue -ErrorVariable e
        $out | Should -BeNullOrEmpty
        $e | Should -BeNullOrEmpty
        "$w" | Should -Match 'recorded as not running'
        $sqliteStore = [LeakTools.Core.Monitoring.SqliteHistoryStore]::new($db, $true, [timespan]::FromSeconds(1))
        try { $sqliteStore.LastRun('no-such-daemon-xyz').Status | Should -Be 'NotRunning' } finally { $sqliteStore.Dispose() }
    }

    It 'warns in syslog once per episode and snapshots once per episode through Invoke-CoreCapture' {
        $db = Join-Path $TestDrive 'grow.db'
        $snapDir = Join-Path $TestDrive 'snaps'
        # A function of that name takes precedence over the Invoke-CoreCapture cmdlet and records
        # how the monitor calls it; the next test uses the real one.
        $global:CoreCaptureCalls = [System.Collections.Generic.List[object]]::new()
        function global:Invoke-CoreCapture { param([int[]] $Id, [string] $Method, [string] $Destination, [switch] $Confirm)
            $null = $Confirm
            $global:CoreCaptureCalls.Add([pscustomobject]@{ Id = $Id; Method = $Method; Destination = $Destination })
            [pscustomobject]@{ Path = Join-Path $Destination "core.$($Id[0])"; Id = $Id[0] } }
        $calls = $global:CoreCaptureCalls
        try {
            $trends = for ($i = 0; $i -lt 8; $i++) {
                Invoke-LeakMonitor -Id $Grow.Pid -MonitorName grow -History $db -Window 60 -Action Snapshot -SnapshotDirectory $snapDir -Logger $Logger -SyslogTag pester-leak -WarningAction SilentlyContinue
                Start-Sleep -Milliseconds 400
            }
        }
        finally { Remove-Item function:Invoke-CoreCapture }
        $trends[-1].Verdict | Should -Be 'Growing'
        $trends[-1].Samples | Should -Be 8
        $calls | Should -HaveCount 1
        $calls[0].Id | Should -Be $Grow.Pid
        $calls[0].Method | Should -Be 'Snapshot'
        $calls[0].Destination | Should -Be $snapDir
        $log = @(Get-Content $LogFile)
        $log | Should -HaveCount 1
        $log[0] | Should -Match '^-t\|pester-leak\|-p\|user.warning\|--\|pester-leaking \(pid \d+\) memory is growing'
        $log[0] | Should -Match ([regex]::Escape("Snapshot: $(Join-Path $snapDir "core.$($Grow.Pid)")"))
    }

    It 'takes one real snapshot per growth episode with Invoke-CoreCapture, and the process runs on' {
        $db = Join-Path $TestDrive 'real-snap.db'
        $snapDir = Join-Path $TestDrive 'real-snaps'
        $trends = for ($i = 0; $i -lt 9; $i++) {
            Invoke-LeakMonitor -Id $Grow.Pid -MonitorName real -History $db -Window 60 -Action Snapshot -SnapshotDirectory $snapDir -NoSyslog -WarningVariable +snapWarnings -WarningAction SilentlyContinue
            Start-Sleep -Milliseconds 300
        }
        $trends[-1].Verdict | Should -Be 'Growing'
        $cores = @(Get-ChildItem $snapDir -File)
        $cores | Should -HaveCount 1 -Because "one episode, one snapshot, however many runs see it growing (warnings: $snapWarnings)"
        $dump = @(Get-CoreDump -Path $snapDir)
        $dump | Should -HaveCount 1
        $dump[0].Id | Should -Be $Grow.Pid
        Test-Path "/proc/$($Grow.Pid)" | Should -BeTrue
        (Get-Content "/proc/$($Grow.Pid)/stat" -Raw) -replace '^.*\) ', '' | Should -Match '^[RS] '   # running or sleeping, not stopped
        $store = [LeakTools.Core.Monitoring.SqliteHistoryStore]::new($db, $true, [timespan]::FromSeconds(1))
        try { $store.OpenEpisodes('real')[0].SnapshotPath | Should -Be $cores[0].FullName } finally { $store.Dispose() }
    }

    It 'says clearly when -Action Snapshot has no Invoke-CoreCapture to call' {
        # A session with the monitor but without Invoke-CoreCapture (a build before core capture, or
        # an Import-Module -Cmdlet that leaves it out).
        $db = Join-Path $TestDrive 'nosnap.db'
        $script = "Import-Module '$ModulePath' -Cmdlet Invoke-LeakMonitor; " +
            "for (`$i = 0; `$i -lt 7; `$i++) { `$null = Invoke-LeakMonitor -Id $($Grow.Pid) -History '$db' -Window 60 -Action Snapshot -NoSyslog -WarningVariable w -WarningAction SilentlyContinue; 'RUN ' + (`$w -join ' | '); Start-Sleep -Milliseconds 300 }"
        $runs = @(& $Pwsh[0] @($Pwsh | Select-Object -Skip 1) -NoProfile -NonInteractive -Command $script | Where-Object { $_ -like 'RUN *' })
        $runs | Should -HaveCount 7
        $runs | ForEach-Object { $_ | Should -Match 'needs Invoke-CoreCapture, which this session does not have' }
        @($runs | Where-Object { $_ -match 'Invoke-CoreCapture is not available' }) | Should -HaveCount 1   # in one run: one episode, one attempt
    }

    It 'keeps the samples when the history is locked, and writes them at the next run' {
        $db = Join-Path $TestDrive 'locked.db'
        Invoke-LeakMonitor -Id $Fixture.Pid -History $db -NoSyslog | Out-Null
        $holder = [Microsoft.Data.Sqlite.SqliteConnection]::new("Data Source=$db;Pooling=False")
        $holder.Open()
        $tx = $holder.BeginTransaction()
        $cmd = $holder.CreateCommand(); $cmd.Transaction = $tx
        $cmd.CommandText = "INSERT INTO runs VALUES ('x', 0, 0, 'Ok', 'holding the lock')"; $null = $cmd.ExecuteNonQuery()
        try {
            { Invoke-LeakMonitor -Id $Fixture.Pid -History $db -NoSyslog -ErrorAction Stop } |
                Should -Throw -ErrorId 'HistoryLocked,LeakTools.Commands.InvokeLeakMonitorCommand'
        }
        finally { $tx.Rollback(); $holder.Dispose() }
        Invoke-LeakMonitor -Id $Fixture.Pid -History $db -NoSyslog | Out-Null
        @(Get-MemoryHistory $db) | Should -HaveCount 3
    }

    It 'reports a corrupt history by id and path' {
        $db = Join-Path $TestDrive 'corrupt.db'
        Set-Content $db ('garbage' * 1000)
        $err = $null
        Invoke-LeakMonitor -Id $Fixture.Pid -History $db -NoSyslog -ErrorVariable err -ErrorAction SilentlyContinue | Out-Null
        $err[0].FullyQualifiedErrorId | Should -Be 'HistoryCorrupt,LeakTools.Commands.InvokeLeakMonitorCommand'
        $err[0].CategoryInfo.Category | Should -Be 'InvalidData'
        $err[0].Exception.Message | Should -Match 'Move it aside'
        { Get-MemoryHistory $db -ErrorAction Stop } | Should -Throw -ErrorId 'HistoryCorrupt,LeakTools.Commands.GetMemoryHistoryCommand'
        { Get-MemoryHistory (Join-Path $TestDrive 'nothing.db') -ErrorAction Stop } | Should -Throw -ErrorId 'HistoryNotFound,LeakTools.Commands.GetMemoryHistoryCommand'
    }

    It 'writes node_exporter textfile metrics' {
        $prom = Join-Path $TestDrive 'textfile/leaktools.prom'
        Invoke-LeakMonitor -Id $Fixture.Pid -MonitorName prom -History (Join-Path $TestDrive 'prom.db') -PrometheusTextfile $prom -NoSyslog | Out-Null
        $text = Get-Content -Raw $prom
        $text | Should -Match "leaktools_process_memory_bytes\{monitor=`"prom`",name=`"pester-monitored`",pid=`"$($Fixture.Pid)`",kind=`"uss`"\} \d+"
        $text | Should -Match 'leaktools_monitor_processes\{monitor="prom"\} 1'
    }
}

Describe 'The SQLite native library' {
    It 'loads from the staged module''s runtimes folder in a fresh pwsh' {
        $db = Join-Path $TestDrive 'fresh.db'
        $script = "Import-Module '$ModulePath'; Invoke-LeakMonitor -Id `$PID -History '$db' -NoSyslog | Out-Null; [LeakTools.Core.Monitoring.SqliteNativeLibrary]::LoadedFrom; (Get-MemoryHistory '$db').Count"
        $out = & $Pwsh[0] @($Pwsh | Select-Object -Skip 1) -NoProfile -NonInteractive -Command $script
        $LASTEXITCODE | Should -Be 0
        $out[0] | Should -Be (Join-Path (Split-Path $ModulePath) 'runtimes/linux-x64/native/libe_sqlite3.so')
        $out[1] | Should -Be '1'
    }
}
