# The one slow test (about a minute): a real cron daemon runs a monitor registered into the real
# /etc/cron.d. The test starts cron if none runs (and stops it afterwards), and always removes its
# cron file. Needs root and the cron package (.ci/run installs it).
BeforeDiscovery {
    $script:CanRun = (Test-Path /usr/sbin/cron) -and ((id -u) -eq '0')
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:CronPid = $null
    $running = & pgrep -x cron
    if (-not $running -and (Test-Path /usr/sbin/cron) -and (id -u) -eq '0') {
        # The package's own start is refused without an init system; run it in the foreground, in
        # its own session, as machine-facts.md found works.
        $psi = [System.Diagnostics.ProcessStartInfo]::new('/usr/bin/setsid')
        foreach ($a in '/usr/sbin/cron', '-f', '-L', '15') { $psi.ArgumentList.Add($a) }
        $psi.RedirectStandardOutput = $true
        $psi.RedirectStandardError = $true
        $script:CronProcess = [System.Diagnostics.Process]::Start($psi)
        $script:CronPid = $CronProcess.Id
    }
}

AfterAll {
    if ($CronPid) {
        & kill -TERM $CronPid
        $null = $CronProcess.WaitForExit(10000)
        $CronProcess.Dispose()
        Remove-Item /var/run/crond.pid -ErrorAction Ignore   # cron leaves it behind on SIGTERM
    }
}

Describe 'A monitor registered into the real cron' -Skip:(-not $CanRun) {
    It 'fires within about a minute and records a sample' {
        $fixture = Start-TestFixture -Path (Build-TestFixture -Source 'memory-pattern.c' -OutputName 'pester-cron-target') -ArgumentList 'flat', '2048'
        $name = "pester-cron-$PID"
        $history = Join-Path $TestDrive 'cron.db'
        $file = "/etc/cron.d/leaktools-pester-cron-$PID"
        try {
            $monitor = Register-LeakMonitor 'pester-cron-target' -MonitorName $name -Interval 1m -Scheduler Cron -History $history -WarningAction SilentlyContinue
            $monitor.Files | Should -Be @($file)
            (Get-Item $file).UnixMode | Should -Be '-rw-r--r--'
            & pgrep -x cron | Should -Not -BeNullOrEmpty

            $samples = @()
            $deadline = (Get-Date).AddSeconds(80)
            while ((Get-Date) -lt $deadline -and $samples.Count -eq 0) {
                Start-Sleep -Seconds 1
                if (Test-Path $history) { $samples = @(Get-MemoryHistory $history -Id $fixture.Pid -ErrorAction SilentlyContinue) }
            }
            $samples.Count | Should -BeGreaterOrEqual 1 -Because 'cron runs /etc/cron.d jobs at the next minute'
            $samples[0].Uss | Should -BeGreaterOrEqual (2MB - 4KB)
            (Get-LeakMonitor $name).LastStatus | Should -Be 'Ok'
        }
        finally {
            Unregister-LeakMonitor $name -Confirm:$false -ErrorAction SilentlyContinue
            Remove-Item $file -ErrorAction Ignore
            $fixture | Stop-TestFixture
        }
        Test-Path $file | Should -BeFalse
    }
}
