BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:ModulePath = Get-TestModulePath
    Import-Module $ModulePath -Force
    $script:Work = Join-Path ([IO.Path]::GetTempPath()) "leaktools-pester-cores-$PID"
    $null = New-Item -ItemType Directory -Force $Work
    $exe = Build-TestFixture -Source 'core-threads.c' -Flags '-O0 -g' -OutputName 'amsHelper'
    $script:Fixture = Start-TestFixture -Path $exe -ArgumentList '4'
    $script:Cores = Join-Path $Work 'cores'
    $null = New-Item -ItemType Directory -Force $Cores
    $script:First = Invoke-CoreCapture -Id $Fixture.Pid -Destination $Cores
    Start-Sleep -Milliseconds 1100
    $script:Second = Invoke-CoreCapture -Id $Fixture.Pid -Destination $Cores -Compress
}

AfterAll {
    $Fixture | Stop-TestFixture
    Remove-Item -Recurse -Force $Work -ErrorAction Ignore
}

Describe 'Get-CoreDump' {
    It 'lists snapshots in a folder and reads naturally with Where-Object and Sort-Object' {
        $list = @(Get-CoreDump -Path $Cores | Where-Object Name -eq amsHelper | Sort-Object Time)
        $list.Count | Should -Be 2
        $list[0].Path | Should -Be $First.Path
        $list[1].Path | Should -Be $Second.Path
        $list | ForEach-Object { $_.Source | Should -Be 'Snapshot'; $_.Id | Should -Be $Fixture.Pid; $_.FreezeTime | Should -Not -BeNullOrEmpty }
        $list[1].Compression | Should -Be 'zstd'
        $list[0].CommandLine | Should -BeLike '*amsHelper 4'
    }

    It 'lists an abrt spool and a systemd-coredump folder laid out as those tools leave them' {
        $spool = Join-Path $Work 'abrt'
        $dir = Join-Path $spool 'ccpp-2024-05-01-10:22:33-4242'
        $null = New-Item -ItemType Directory -Force $dir
        @{ type = 'CCpp'; analyzer = 'CCpp'; executable = '/sbin/amsHelper'; pid = '4242'; uid = '0'; time = '1714558953'
           reason = 'amsHelper killed by SIGABRT'; cmdline = '/sbin/amsHelper -f'; package = 'ams-11.8.0-1.el7'; count = '1' }.GetEnumerator() |
            ForEach-Object { Set-Content -NoNewline -Path (Join-Path $dir $_.Key) -Value $_.Value }
        Copy-Item $First.Path (Join-Path $dir 'coredump')
        $sd = Join-Path $Work 'systemd'
        $null = New-Item -ItemType Directory -Force $sd
        Copy-Item $Second.Path (Join-Path $sd "core.amsHelper.0.0123456789abcdef0123456789abcdef.$($Fixture.Pid).1714558953123456.zst")

        $all = @(Get-CoreDump -AbrtSpool $spool -SystemdCoredumpPath $sd | Sort-Object Time)
        $all.Source | Should -Be @('Abrt', 'SystemdCoredump')
        $abrt = $all[0]
        $abrt.Id | Should -Be 4242
        $abrt.Name | Should -Be 'amsHelper'
        $abrt.Package | Should -Be 'ams-11.8.0-1.el7'
        $abrt.Reason | Should -Be 'amsHelper killed by SIGABRT'
        $abrt.Signal | Should -Be 6
        $abrt.Directory | Should -Be $dir
        $all[1].Id | Should -Be $Fixture.Pid
        $all[1].Compression | Should -Be 'zstd'
        $all[1].Threads | Should -Be 5
    }

    It 'lists a truncated core with what could be read, and a warning' {
        $dir = Join-Path $Work 'broken'
        $null = New-Item -ItemType Directory -Force $dir
        $bytes = [IO.File]::ReadAllBytes($First.Path)
        [IO.File]::WriteAllBytes((Join-Path $dir 'core.4242'), $bytes[0..([Math]::Min($bytes.Length, 2MB) - 1)])
        $warnings = $null
        $d = Get-CoreDump -Path $dir -WarningVariable warnings -WarningAction SilentlyContinue
        $d.Id | Should -Be $Fixture.Pid
        $d.Problem | Should -Match 'truncated'
        $warnings.Count | Should -Be 1
        ($d | Format-Table | Out-String -Width 300) | Should -Match '\(! truncated'
    }

    It 'renders its table view, also after Import-Clixml' {
        $xml = Join-Path $Work 'cores.xml'
        Get-CoreDump -Path $Cores | Export-Clixml $xml
        $text = Import-Clixml $xml | Out-String -Width 250
        $text | Should -Match 'Freeze\(ms\)'
        $text | Should -Match 'amsHelper'
        $text | Should -Match 'Snapshot'
    }

    It 'reports a missing -Path' {
        { Get-CoreDump -Path (Join-Path $Work 'nope') -ErrorAction Stop } | Should -Throw -ErrorId 'PathNotFound,LeakTools.Commands.GetCoreDumpCommand'
    }
}
