BeforeDiscovery {
    $script:HasValgrind = [bool](Get-Command valgrind -ErrorAction Ignore)
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:ModulePath = Get-TestModulePath
    Import-Module $ModulePath -Force
    $script:Pwsh = Get-PwshCommand
    $script:Memwatch = Build-TestFixture -Source 'memwatch-memory.c' -Flags '-O0 -g' -OutputName 'pester-memwatch'
}

Describe 'Invoke-Valgrind' {
    It 'finds the seed''s memwatch leak (line 11) and double free (line 15) from a relative path' -Skip:(-not $HasValgrind) {
        Push-Location (Split-Path $Memwatch)
        try { $out = Invoke-Valgrind ./pester-memwatch -Duration '00:00:30' -WarningVariable w -WarningAction SilentlyContinue }
        finally { Pop-Location }
        $out[-1].PSObject.TypeNames[0] | Should -Be 'LeakTools.LeakSummary'
        $leak = $out | Where-Object Kind -eq DefinitelyLost
        $leak | Should -HaveCount 1
        $leak.Bytes | Should -Be 512
        $leak.Line | Should -Be 11
        ($out | Where-Object Kind -eq InvalidFree).Line | Should -Be 15
        $out[-1].DefinitelyLost | Should -Be 512
        $out[-1].PID | Should -Be $leak.ProcessId   # alias from the types file
        $w | Should -Match 'exited on its own after .* before -Duration 00:00:30'
    }

    It 'says ValgrindNotInstalled (NotInstalled) when valgrind is not on PATH' {
        $script = "Import-Module '$ModulePath'; `$env:PATH = '/nonexistent'; try { Invoke-Valgrind /bin/true -ErrorAction Stop } catch { `$_.FullyQualifiedErrorId; `$_.CategoryInfo.Category; `$_.Exception.Message }"
        $out = & $Pwsh[0] @($Pwsh | Select-Object -Skip 1) -NoProfile -Command $script
        $out[0] | Should -Be 'ValgrindNotInstalled,LeakTools.Commands.InvokeValgrindCommand'
        $out[1] | Should -Be 'NotInstalled'
        $out[2] | Should -Match 'apt-get install valgrind'
    }

    It 'refuses a missing program with ProgramNotFound' {
        { Invoke-Valgrind ./surely-not-here -ErrorAction Stop } | Should -Throw -ErrorId 'ProgramNotFound,LeakTools.Commands.InvokeValgrindCommand'
    }
}

Describe 'Import-ValgrindLog' {
    BeforeAll {
        $script:Samples = Join-Path (Split-Path (Split-Path $PSScriptRoot -Parent) -Parent) 'tests/samples/valgrind'
    }

    It 'reads the seed tutorial''s text excerpt with ??? frames and thousands separators' {
        $out = Import-ValgrindLog (Join-Path $Samples 'seed-amsHelper-leak.txt') -WarningVariable w -WarningAction SilentlyContinue
        $leak = $out | Where-Object { $_ -is [LeakTools.LeakRecord] }
        $leak.LossRecord | Should -Be 2251
        $leak.LossRecordCount | Should -Be 3462
        ($leak.Frames | Where-Object { -not $_.Function }).Count | Should -Be 8
        $leak.Frames[1].Module | Should -Be '/usr/lib64/libnss3.so'
        $w | Should -Match 'no ERROR SUMMARY'
    }

    It 'throws NotValgrindReport and PathNotFound with -ErrorAction Stop' {
        { Import-ValgrindLog (Join-Path $Samples 'regenerate.sh') -ErrorAction Stop } | Should -Throw -ErrorId 'NotValgrindReport,LeakTools.Commands.ImportValgrindLogCommand'
        { Import-ValgrindLog (Join-Path $Samples 'nothing.xml') -ErrorAction Stop } | Should -Throw -ErrorId 'PathNotFound,LeakTools.Commands.ImportValgrindLogCommand'
    }

    It 'renders records like valgrind, also after Export-Clixml' {
        $file = Join-Path $TestDrive 'threads.clixml'
        Import-ValgrindLog (Join-Path $Samples 'threads.xml') | Export-Clixml $file
        $text = Import-Clixml $file | Out-String -Width 200
        $text | Should -Match 'Thread 2 worker-1:\r?\nInvalid write of size 1\r?\n   at 0x[0-9A-F]+: overflow_and_leak \(valgrind-threads\.c:26\)'
        $text | Should -Match ' Uninitialised value was created by a heap allocation'
        $text | Should -Match '80 \(16 direct, 64 indirect\) bytes in 1 blocks are definitely lost in loss record 4 of 5'
        $text | Should -Match '   definitely lost: 116 bytes in 2 blocks'
        (Import-Clixml $file | Format-Table | Out-String -Width 200) | Should -Match 'InvalidWrite\s+2 overflow_and_leak \(valgrind-threads\.c:26\)'
    }

    It 'exports records to CSV with flat columns' {
        $csv = Join-Path $TestDrive 'leaks.csv'
        Import-ValgrindLog (Join-Path $Samples 'memwatch.txt') | Where-Object Kind -eq DefinitelyLost | Export-Csv $csv
        $row = Import-Csv $csv
        $row.Kind | Should -Be 'DefinitelyLost'
        $row.Bytes | Should -Be '512'
        $row.Line | Should -Be '11'
        $row.File | Should -Be 'memwatch-memory.c'
    }
}

Describe 'Frames valgrind could not name, resolved afterwards with Resolve-Address' {
    It 'names the ??? frames of a stripped program from its build-id debug file' -Skip:(-not (Get-Command valgrind -ErrorAction Ignore) -or -not (Get-Command objcopy -ErrorAction Ignore)) {
        Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
        Import-Module (Get-TestModulePath) -Force
        $built = Build-TestFixture -Source 'valgrind-stripped.c' -Flags '-O0 -g -Wl,--build-id' -OutputName 'vg-buildid'
        $app = Join-Path $TestDrive 'app'
        Copy-Item $built $app
        # Debug info goes to a private build-id tree valgrind does not know; the program is stripped.
        $id = ((& readelf -n $app | Select-String 'Build ID: (\w+)').Matches[0].Groups[1].Value)
        $debugRoot = Join-Path $TestDrive 'debug'
        $null = New-Item -ItemType Directory -Force (Join-Path $debugRoot ".build-id/$($id.Substring(0, 2))")
        & objcopy --only-keep-debug $app (Join-Path $debugRoot ".build-id/$($id.Substring(0, 2))/$($id.Substring(2)).debug")
        & objcopy --strip-all $app

        $leak = Invoke-Valgrind $app | Where-Object Kind -eq DefinitelyLost
        $unknown = @($leak.Frames | Where-Object { -not $_.Function -and $_.Module -eq $app })
        $unknown | Should -HaveCount 3
        $resolved = $unknown | Resolve-Address -DebugDirectory $debugRoot
        ($resolved | Where-Object { -not $_.IsInline }).Function | Should -Be @('make_buffer', 'make_record', 'main')
        $resolved[0].File | Should -Match 'valgrind-stripped\.c$'
        $resolved[0].Line | Should -BeGreaterThan 0
    }
}
