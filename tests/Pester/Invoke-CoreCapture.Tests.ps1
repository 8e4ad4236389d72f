# $PlainCore is set in BeforeDiscovery and read by an It's -Skip: the analyzer does not follow it there.
[Diagnostics.CodeAnalysis.SuppressMessageAttribute('PSUseDeclaredVarsMoreThanAssignments', 'PlainCore', Justification = 'read by -Skip below')]
param()

BeforeDiscovery {
    # The real Abort runs only where the kernel writes a plain ./core (this machine): tests never change core_pattern.
    $PlainCore = (Get-Content /proc/sys/kernel/core_pattern -Raw).Trim() -eq 'core' -and (Get-Content /proc/sys/kernel/core_uses_pid -Raw).Trim() -eq '0'
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:ModulePath = Get-TestModulePath
    Import-Module $ModulePath -Force
    $script:Exe = Build-TestFixture -Source 'core-threads.c' -Flags '-O0 -g' -OutputName 'pester-core-thr'
    $script:Work = Join-Path ([IO.Path]::GetTempPath()) "leaktools-pester-capture-$PID"
    $null = New-Item -ItemType Directory -Force $Work
    $script:Pwsh = Get-PwshCommand

    # Starts the fixture in its own working directory, optionally under prlimit; waits for READY.
    function Start-CoreFixture {
        # A test's own fixture: -WhatIf/-Confirm would make no sense for it.
        [Diagnostics.CodeAnalysis.SuppressMessageAttribute('PSUseShouldProcessForStateChangingFunctions', '', Justification = 'starts a test fixture')]
        param([string] $Cwd, [string[]] $Prlimit = @(), [int] $HeapMiB = 16)
        $null = New-Item -ItemType Directory -Force $Cwd
        $file = if ($Prlimit) { 'prlimit' } else { $Exe }
        $psi = [System.Diagnostics.ProcessStartInfo]::new($file)
        foreach ($a in $Prlimit) { $psi.ArgumentList.Add($a) }
        if ($Prlimit) { $psi.ArgumentList.Add($Exe) }
        $psi.ArgumentList.Add("$HeapMiB")
        $psi.WorkingDirectory = $Cwd
        $psi.RedirectStandardInput = $true
        $psi.RedirectStandardOutput = $true
        $p = [System.Diagnostics.Process]::Start($psi)
        $line = $p.StandardOutput.ReadLine()
        if ($line -notlike 'READY*') { throw "fixture did not start: $line" }
        $p
    }

    function Get-Backtrace([string] $Core) {
        (& gdb -batch -nx -ex 'thread apply all bt' $Exe $Core 2>&1) -join "`n"
    }
}

AfterAll {
    Get-Process -Name 'pester-core-thr' -ErrorAction Ignore | Stop-Process -Force
    Remove-Item -Recurse -Force $Work -ErrorAction Ignore
}

Describe 'Invoke-CoreCapture -Method Snapshot' {
    It 'snapshots a process that Start-Process started, piped from Get-ProcessPss; gdb shows every thread and the process runs on' -Skip:(-not (Get-Command gdb -ErrorAction Ignore)) {
        $log = Join-Path $Work 'daemon.log'
        $p = Start-Process -FilePath $Exe -ArgumentList 64, 'daemon' -PassThru -RedirectStandardOutput $log
        try {
            $deadline = [DateTime]::Now.AddSeconds(20)
            while (-not ((Test-Path $log) -and (Get-Content -Raw $log) -like 'READY*') -and [DateTime]::Now -lt $deadline) { Start-Sleep -Milliseconds 50 }
            $dir = Join-Path $Work 'snap'
            $null = New-Item -ItemType Directory -Force $dir

            $d = Get-ProcessPss -Id $p.Id | Invoke-CoreCapture -Destination $dir

            $d.PSObject.TypeNames[0] | Should -Be 'LeakTools.CoreDump'
            $d.Id | Should -Be $p.Id
            $d.PID | Should -Be $p.Id
            $d.Source | Should -Be 'Snapshot'
            $d.Threads | Should -Be 5
            $d.FreezeTime | Should -BeOfType [timespan]
            $d.FreezeTime.TotalMilliseconds | Should -BeGreaterThan 0
            $d.Size | Should -BeGreaterThan 64MB
            @(Get-ChildItem -Force $dir).Name | Should -Be (Split-Path -Leaf $d.Path)

            $bt = Get-Backtrace $d.Path
            $bt | Should -Match 'park_alpha'
            $bt | Should -Match 'park_beta'
            $bt | Should -Match 'park_gamma'

            Start-Sleep -Milliseconds 200
            $p.HasExited | Should -BeFalse      # .NET did not see a stop it took for an exit
            (Get-Content "/proc/$($p.Id)/status" | Select-String '^TracerPid:\s+(\d+)').Matches[0].Groups[1].Value | Should -Be '0'
            (Get-Content "/proc/$($p.Id)/status" | Select-String '^State:\s+(\w)').Matches[0].Groups[1].Value | Should -BeIn 'S', 'R'
        }
        finally {
            Stop-Process -Id $p.Id -Force -ErrorAction Ignore
        }
    }

    It 'takes a pid in the first position, compresses with zstd, and -WhatIf writes nothing' {
        $p = Start-CoreFixture (Join-Path $Work 'c1')
        try {
            $dir = Join-Path $Work 'zst'
            $null = New-Item -ItemType Directory -Force $dir
            Invoke-CoreCapture $p.Id -Destination $dir -WhatIf
            @(Get-ChildItem $dir).Count | Should -Be 0
            $d = Invoke-CoreCapture $p.Id -Destination $dir -Compress
            $d.Path | Should -BeLike '*.zst'
            $d.Compression | Should -Be 'zstd'
            & zstd -t -q $d.Path
            $LASTEXITCODE | Should -Be 0
            (Get-CoreDump -Path $d.Path).Threads | Should -Be 5
        }
        finally { $p.Kill(); $p.WaitForExit() }
    }

    It 'reports bad targets and destinations with stable error ids' {
        { Invoke-CoreCapture -Id 999998 -ErrorAction Stop } | Should -Throw -ErrorId 'ProcessNotFound,LeakTools.Commands.InvokeCoreCaptureCommand'
        { Invoke-CoreCapture -Id 2 -ErrorAction Stop } | Should -Throw -ErrorId 'KernelThread,LeakTools.Commands.InvokeCoreCaptureCommand'
        { Invoke-CoreCapture -Id $PID -Timeout 0 } | Should -Throw -ErrorId 'InvalidTimeout,LeakTools.Commands.InvokeCoreCaptureCommand'
        $p = Start-CoreFixture (Join-Path $Work 'c2') -HeapMiB 4
        try {
            $err = $null
            Invoke-CoreCapture -Id $p.Id -Destination (Join-Path $Work 'no-such-dir') -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -Be 'DestinationNotFound,LeakTools.Commands.InvokeCoreCaptureCommand'
            $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
            $err[0].TargetObject | Should -Be $p.Id
            { Invoke-CoreCapture -Id $p.Id -Destination /proc/self -ErrorAction Stop } | Should -Throw -ErrorId 'DestinationNotWritable,LeakTools.Commands.InvokeCoreCaptureCommand'
            $p.HasExited | Should -BeFalse
        }
        finally { $p.Kill(); $p.WaitForExit() }
    }

    It 'fails with DestinationFull and leaves no partial file when the filesystem is full' -Skip:((id -u) -ne '0' -or -not (Get-Command unshare -ErrorAction Ignore)) {
        $p = Start-CoreFixture (Join-Path $Work 'c3') -HeapMiB 32
        try {
            $dir = Join-Path $Work 'full'
            $null = New-Item -ItemType Directory -Force $dir
            $inner = Join-Path $Work 'full.ps1'
            Set-Content $inner "Import-Module '$ModulePath'; try { Invoke-CoreCapture -Id $($p.Id) -Destination '$dir' -ErrorAction Stop; 'NO ERROR' } catch { `$_.FullyQualifiedErrorId; `$_.CategoryInfo.Category }; (Get-ChildItem -Force '$dir').Count"
            $cmd = ($Pwsh | ForEach-Object { "'$_'" }) -join ' '
            # A 4 MiB tmpfs in a private mount namespace: nothing outside this test sees it.
            $out = & unshare -m --propagation private sh -c "mount -t tmpfs -o size=4m leaktools-full '$dir' && exec $cmd -NoProfile -NonInteractive -File '$inner'"
            $out[0] | Should -Be 'DestinationFull,LeakTools.Commands.InvokeCoreCaptureCommand'
            $out[1] | Should -Be 'WriteError'
            $out[2] | Should -Be '0'
            $p.HasExited | Should -BeFalse
        }
        finally { $p.Kill(); $p.WaitForExit() }
    }

    It 'works with the pwsh bootstrap helper when no dotnet muxer is used (LEAKTOOLS_HELPER=pwsh)' {
        $p = Start-CoreFixture (Join-Path $Work 'c4') -HeapMiB 4
        try {
            $dir = Join-Path $Work 'boot'
            $null = New-Item -ItemType Directory -Force $dir
            $env:LEAKTOOLS_HELPER = 'pwsh'
            try {
                $script = "Import-Module '$ModulePath'; `$d = Invoke-CoreCapture -Id $($p.Id) -Destination '$dir' -Verbose 4>&1 | ForEach-Object { if (`$_ -is [System.Management.Automation.VerboseRecord]) { `$_.Message } else { `$_.Threads } }; `$d"
                $out = & $Pwsh[0] @($Pwsh | Select-Object -Skip 1) -NoProfile -NonInteractive -Command $script
            }
            finally { Remove-Item Env:LEAKTOOLS_HELPER }
            ($out -join "`n") | Should -Match 'helper process \d+: .*pwsh'
            $out[-1] | Should -Be '5'
        }
        finally { $p.Kill(); $p.WaitForExit() }
    }
}

Describe 'Invoke-CoreCapture -Method Abort' {
    It 'aborts a fixture under this machine''s plain core_pattern and finds the kernel''s core' -Skip:(-not $PlainCore) {
        $cwd = Join-Path $Work 'abort'
        # Soft core limit 0 (as many daemons run), hard limit unlimited: prlimit(2) can lift it.
        $p = Start-CoreFixture $cwd -Prlimit @('--core=0:unlimited')
        $d = Invoke-CoreCapture -Id $p.Id -Method Abort -Force
        $p.WaitForExit(10000) | Should -BeTrue
        $d.Path | Should -Be (Join-Path $cwd 'core')
        $d.Source | Should -Be 'File'
        $d.Signal | Should -Be 6
        $d.Id | Should -Be $p.Id
        $d.Name | Should -Be 'pester-core-thr'
        $d.Threads | Should -Be 5
        Get-Backtrace $d.Path | Should -Match 'park_gamma'
    }

    It 'says when the hard core limit blocks it, and leaves the process running' {
        $p = Start-CoreFixture (Join-Path $Work 'blocked') -Prlimit @('--core=0:0') -HeapMiB 4
        try {
            $err = $null
            Invoke-CoreCapture -Id $p.Id -Method Abort -Force -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -Be 'CoreLimitBlocked,LeakTools.Commands.InvokeCoreCaptureCommand'
            $err[0].CategoryInfo.Category | Should -Be 'PermissionDenied'
            $err[0].Exception.Message | Should -Match 'hard limit is 0'
            $err[0].Exception.Message | Should -Match 'CAP_SYS_RESOURCE'
            Start-Sleep -Milliseconds 100
            $p.HasExited | Should -BeFalse
            Invoke-CoreCapture -Id $p.Id -Method Abort -WhatIf
            $p.HasExited | Should -BeFalse
        }
        finally { $p.Kill(); $p.WaitForExit() }
    }
}
