# LeakTools objects through real PowerShell SSH remoting: an sshd of the test's own (temp config,
# temp host key, key-based root login with a temp key, the powershell subsystem running this pwsh)
# listening on 127.0.0.2 and 127.0.0.3, two "hosts" of one machine. Nothing of the host's ssh set-up
# is used or changed: no system sshd, /etc/ssh untouched, known hosts go to /dev/null. /run/sshd (the
# privilege separation folder sshd insists on) is created only if missing and removed again.
BeforeDiscovery {
    $script:CanSsh = (Test-Path /usr/sbin/sshd) -and (Get-Command ssh, ssh-keygen -ErrorAction Ignore).Count -eq 2 -and (id -u) -eq '0'
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:ModulePath = (Resolve-Path (Get-TestModulePath)).Path
    Import-Module $ModulePath -Force
    $script:Hosts = '127.0.0.2', '127.0.0.3'
    if (-not $CanSsh) { return }

    $script:Work = Join-Path ([IO.Path]::GetTempPath()) "leaktools-pester-ssh-$PID"
    $null = New-Item -ItemType Directory -Force $Work
    & chmod 700 $Work
    & ssh-keygen -q -t ed25519 -N '' -C leaktools-test-host -f (Join-Path $Work 'host_key')
    & ssh-keygen -q -t ed25519 -N '' -C leaktools-test-client -f (Join-Path $Work 'client_key')
    Copy-Item (Join-Path $Work 'client_key.pub') (Join-Path $Work 'authorized_keys')
    $script:ClientKey = Join-Path $Work 'client_key'

    # The subsystem runs this very pwsh (dotnet pwsh.dll when it is the dotnet tool).
    $pwsh = (Get-PwshCommand | ForEach-Object { "'$_'" }) -join ' '
    $subsystem = Join-Path $Work 'pwsh-subsystem.sh'
    Set-Content $subsystem "#!/bin/sh`nexec $pwsh -sshs -NoLogo -NoProfile`n"
    & chmod 755 $subsystem

    $probe = [System.Net.Sockets.TcpListener]::new([System.Net.IPAddress]::Parse('127.0.0.2'), 0)
    $probe.Start(); $script:Port = $probe.LocalEndpoint.Port; $probe.Stop()
    $config = Join-Path $Work 'sshd_config'
    Set-Content $config @"
ListenAddress 127.0.0.2:$Port
ListenAddress 127.0.0.3:$Port
HostKey $Work/host_key
PidFile $Work/sshd.pid
AuthorizedKeysFile $Work/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem powershell $subsystem
"@
    $script:MadeRunSshd = -not (Test-Path /run/sshd)
    if ($MadeRunSshd) { $null = New-Item -ItemType Directory /run/sshd; & chmod 755 /run/sshd }
    $log = Join-Path $Work 'sshd.log'
    $script:Sshd = Start-Process /usr/sbin/sshd -ArgumentList '-D', '-e', '-f', $config -RedirectStandardError $log -PassThru
    # wait until both addresses listen (a bound on the wait, not a timed assertion)
    $deadline = [DateTime]::UtcNow.AddSeconds(30)
    while (@(Select-String -Path $log -Pattern 'Server listening' -ErrorAction Ignore).Count -lt 2) {
        if ($Sshd.HasExited -or [DateTime]::UtcNow -gt $deadline) { throw "sshd did not start: $(Get-Content -Raw $log)" }
        Start-Sleep -Milliseconds 100
    }
    $script:Ssh = @{
        HostName = $Hosts; UserName = 'root'; Port = $Port; KeyFilePath = $ClientKey
        Options = @{ StrictHostKeyChecking = 'no'; UserKnownHostsFile = '/dev/null'; BatchMode = 'yes'; LogLevel = 'ERROR' }
    }
    $script:Leaker = Build-TestFixture -Source 'remote-leaker.c' -Flags '-O0 -g' -OutputName 'pester-remote-leaker'
    $script:Fixture = Start-TestFixture -Path (Build-TestFixture -Source 'touch-memory.c' -OutputName 'pester-remote-touch') -ArgumentList '2048'
}

AfterAll {
    if (-not $CanSsh) { return }
    $Fixture | Stop-TestFixture
    if ($Sshd -and -not $Sshd.HasExited) { Stop-Process -Id $Sshd.Id -Force; $null = $Sshd.WaitForExit(10000) }
    if ($MadeRunSshd) { Remove-Item /run/sshd -Recurse -Force -ErrorAction Ignore }
    Remove-Item -Recurse -Force $Work -ErrorAction Ignore
}

Describe 'LeakTools over SSH remoting (Invoke-Command -HostName)' -Skip:(-not $CanSsh) {
    It 'brings Get-ProcessPss from two hosts; the view fits 80 columns and shows PSComputerName' {
        $fixturePid = $Fixture.Pid
        $r = @(Invoke-Command @Ssh -ErrorAction Stop -ScriptBlock {
                Import-Module $using:ModulePath
                Get-ProcessPss -Id $using:fixturePid
            })
        $r.Count | Should -Be 2
        @($r.PSComputerName | Sort-Object) | Should -Be $Hosts
        $r[0].PSObject.TypeNames[0] | Should -Be 'Deserialized.LeakTools.ProcessMemory'
        $r | ForEach-Object { $_.Id | Should -Be $Fixture.Pid; $_.Uss | Should -BeGreaterOrEqual (2048KB - 4KB) }

        $lines = ($r | Out-String -Width 80) -split "`n"
        $lines | Where-Object Length -gt 80 | Should -BeNullOrEmpty
        $header = $lines | Where-Object { $_ -match '\bPSS\(MiB\)' } | Select-Object -First 1
        foreach ($label in 'Id', 'Name', 'PSS(MiB)', 'USS(MiB)', 'RSS(MiB)', 'Swap(MiB)', 'PSComputerName') {
            $header | Should -Match "(^|\s)$([regex]::Escape($label))(\s|$)" -Because "the column $label is whole in the header"
        }
        foreach ($h in $Hosts) { $lines | Where-Object { $_ -match "^\s*$($Fixture.Pid)\s.*\s$([regex]::Escape($h))\s*$" } | Should -HaveCount 1 }
    }

    It 'streams Watch-Allocation stacks while the program runs, with readable frames and the host named' {
        $flags = Join-Path $Work 'flags'
        $null = New-Item -ItemType Directory -Force $flags
        $leaker = $Leaker
        # Each host's program leaks until its flag exists; the client makes the flag when that host's
        # first stack arrives, so a program can only end by its flag if stacks arrive while it runs.
        $r = @(Invoke-Command @Ssh -ErrorAction Stop -ScriptBlock {
                Import-Module $using:ModulePath
                $me = ($env:SSH_CONNECTION -split ' ')[2]
                Watch-Allocation -FilePath $using:leaker -ArgumentList (Join-Path $using:flags "flag-$me") -Expire 0.3
            } | ForEach-Object {
                if ($_.PSObject.TypeNames[0] -eq 'Deserialized.LeakTools.AllocationStack' -and -not $_.Final) {
                    $null = New-Item -Force (Join-Path $flags "flag-$($_.PSComputerName)")
                }
                $_
            })
        foreach ($h in $Hosts) { Get-Content (Join-Path $flags "flag-$h.done") | Should -Be 'flag' -Because "$h streamed a stack before its program ended" }

        $stacks = @($r | Where-Object { $_.PSObject.TypeNames[0] -eq 'Deserialized.LeakTools.AllocationStack' })
        @($stacks.PSComputerName | Sort-Object -Unique) | Should -Be $Hosts
        foreach ($s in $stacks) {
            $s.Function | Should -Be 'leak_one'
            $leak = @($s.Frames | Where-Object Function -eq 'leak_one')
            $leak | Should -HaveCount 1 -Because 'frames arrive as objects, not as their ToString()'
            $leak[0].File | Should -BeLike '*remote-leaker.c'
            $leak[0].Address | Should -BeGreaterThan 0
            $s.Stack | Should -BeLike '*<- leak_one (remote-leaker.c:*) <- main (remote-leaker.c:*'
        }
        $text = $stacks | Out-String -Width 200
        $text | Should -Not -Match '0x0000000000000000 \?'
        foreach ($h in $Hosts) {
            $text | Should -Match "$([regex]::Escape($h)): CallStack\[\d+\] (expired|final)"
            $text | Should -Match 'pester-remote-leaker\s+leak_one\(\)\+\d+ remote-leaker\.c:\d+'
        }
    }
}
