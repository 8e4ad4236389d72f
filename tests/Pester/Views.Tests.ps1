# Views and CSV on live objects of a fixture whose comm and argv carry terminal escape sequences:
# every default table view (enumerated from module/*.Format.ps1xml) fits 80 columns with every
# column header whole, nothing prints a control character, and Export-Csv gives a readable Stack.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:ModulePath = Get-TestModulePath
    Import-Module $ModulePath -Force
    $script:Work = Join-Path ([IO.Path]::GetTempPath()) "leaktools-pester-views-$PID"
    $null = New-Item -ItemType Directory -Force $Work
    $exe = Build-TestFixture -Source 'hostile-names.c' -Flags '-O0 -g' -OutputName 'pester-hostile'
    $script:Fixture = Start-TestFixture -Path $exe -ArgumentList (Join-Path $Work 'manifest'), "arg`e[2J`a`r`u{9b}31m"
    $script:Objects = @{
        'LeakTools.ProcessMemory' = { Get-ProcessPss -Id $Fixture.Pid }
        'LeakTools.MemoryMapping' = { Get-ProcessMemoryMap -Id $Fixture.Pid }
        'LeakTools.CoreDump'      = { Invoke-CoreCapture -Id $Fixture.Pid -Destination $Work }
        'LeakTools.LeakedAllocation' = { Find-LeakedAllocation -Id $Fixture.Pid }
        'LeakTools.HeapSummary'   = { Get-HeapSummary -Id $Fixture.Pid }
        'LeakTools.MemoryTrend'   = { 1..3 | ForEach-Object { Get-ProcessPss -Id $Fixture.Pid } | Measure-MemoryTrend }
        'LeakTools.LeakMonitor'   = { Register-LeakMonitor 'pester-hostile' -Interval 5m -Scheduler Cron -Root $Work -WarningAction SilentlyContinue }
        'LeakTools.ElfSymbol'     = { Get-ElfSymbol $exe -Name main }
        'LeakTools.StackFrame'    = { Resolve-Address -Path $exe (Get-ElfSymbol $exe -Name main).Address }
    }
    $script:exe = $exe
    # the default view of each type: the first view that selects it, in the manifest's file order
    $manifest = Import-PowerShellDataFile $ModulePath
    $script:DefaultTables = [ordered]@{}
    $seen = @{}
    foreach ($file in $manifest.FormatsToProcess) {
        $doc = [xml](Get-Content -Raw (Join-Path (Split-Path $ModulePath) $file))
        foreach ($view in $doc.Configuration.ViewDefinitions.View) {
            foreach ($t in @($view.ViewSelectedBy.TypeName)) {
                if ($seen[$t]) { continue }
                $seen[$t] = $true
                if ($view.TableControl -and $t -notlike 'Deserialized.*') { $DefaultTables[$t] = @($view.TableControl.TableHeaders.TableColumnHeader.Label) }
            }
        }
    }
}

AfterAll {
    $Fixture | Stop-TestFixture
    Remove-Item -Recurse -Force $Work -ErrorAction Ignore
}

Describe 'Views' {
    It 'renders every default table view in 80 columns, headers whole, no control characters' {
        $DefaultTables.Count | Should -BeGreaterThan 8
        foreach ($type in $DefaultTables.Keys) {
            $Objects.ContainsKey($type) | Should -BeTrue -Because "$type has a default table view, so the test needs live objects of it"
            $objs = @(& $Objects[$type] | Select-Object -First 20)
            $objs.Count | Should -BeGreaterThan 0 -Because $type
            $text = $objs | Out-String -Width 80
            $lines = $text -split "`n"
            $lines | Where-Object Length -gt 80 | Should -BeNullOrEmpty -Because "$type fits 80 columns"
            foreach ($label in $DefaultTables[$type]) {
                $lines | Where-Object { $_ -match "(^|\s)$([regex]::Escape($label))(\s|$)" } | Should -Not -BeNullOrEmpty -Because "$type shows the whole header $label"
            }
            $text | Should -Not -Match '[\x00-\x09\x0b-\x1f\x7f-\x9f]' -Because "$type prints no control character"
        }
    }

    It 'escapes the hostile name and command line visibly' {
        $text = Get-ProcessPss -Id $Fixture.Pid | Out-String -Width 200
        $text | Should -Match ([regex]::Escape('ev\e[2Jil\a\r\x'))
        $text | Should -Match ([regex]::Escape('arg\e[2J\a\r\u009b31m'))
    }

    It 'escapes symbol names in the stack views' {
        $f = [LeakTools.StackFrame]@{ Address = 0x401000; Module = '/x/lib.so'; Function = "evil`e]0;owned`a"; File = "/s/a`rb.c"; Line = 3 }
        $s = [LeakTools.AllocationStack]@{ StackId = 1; Function = $f.Function; Frames = @($f) }
        $text = ($s | Out-String) + ($f | Out-String) + ($s | Format-Table -View Table | Out-String)
        $text | Should -Not -Match '[\x00-\x09\x0b-\x1f\x7f-\x9f]'
        $text | Should -Match ([regex]::Escape('evil\e]0;owned\a'))
        $s.Stack | Should -Be 'evil\e]0;owned\a (a\rb.c:3)'
    }

    It 'exports leaked blocks and stacks to CSV with a readable, escaped Stack column' {
        $f1 = [LeakTools.StackFrame]@{ Address = 0x401136; Module = '/x/app'; ModuleOffset = 0x1136; Function = 'leak_here'; File = '/s/app.c'; Line = 12 }
        $f2 = [LeakTools.StackFrame]@{ Address = 0x7f0000001139; Module = '/x/libfoo.so'; ModuleOffset = 0x1139 }
        $csv = Join-Path $Work 'stacks.csv'
        [LeakTools.AllocationStack]@{ StackId = 1; Frames = @($f1, $f2) } | Export-Csv $csv
        (Import-Csv $csv).Stack | Should -Be 'leak_here (app.c:12) <- 0x1139 (libfoo.so)'
        $leaks = Join-Path $Work 'leaks.csv'
        Find-LeakedAllocation -Id $Fixture.Pid | Export-Csv $leaks
        $rows = @(Import-Csv $leaks)
        $rows.Count | Should -BeGreaterOrEqual 1
        $rows[0].PSObject.Properties.Name | Should -Contain 'Stack'
    }
}
