BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:Exe = Build-TestFixture -Source 'touch-memory.c' -Flags '-O0 -g -static' -OutputName 'pester-touch-static'
    $script:Fixture = Start-TestFixture -Path $Exe -ArgumentList '3072', '1024'
}

AfterAll {
    $Fixture | Stop-TestFixture
}

Describe 'Get-ProcessMemoryMap' {
    It 'equals the totals line of pmap -X for the same stopped process' -Skip:(-not (Get-Command pmap -ErrorAction Ignore)) {
        $pids = @($Fixture.Pid, [int]$Fixture.Values.child)
        & kill -STOP @pids
        try {
            Start-Sleep -Milliseconds 100
            $pmap = & pmap -X $Fixture.Pid
            $maps = Get-ProcessMemoryMap -Id $Fixture.Pid
        }
        finally { & kill -CONT @pids }
        $header = ($pmap | Where-Object { $_ -match '^\s+Address' }) -split '\s+' | Where-Object { $_ }
        $totals = ($pmap | Select-Object -Last 1) -split '\s+' | Where-Object { $_ }
        $columns = $header[5..($header.Count - 2)]
        foreach ($name in 'Size', 'Rss', 'Pss', 'Anonymous') {
            $expected = [long]$totals[[array]::IndexOf($columns, $name)]
            ($maps | Measure-Object -Property $name -Sum).Sum / 1KB | Should -Be $expected -Because "$name total"
        }
    }

    It 'shows the anonymous mapping the fixture touched, with pmap -X columns' {
        $addr = [Convert]::ToUInt64($Fixture.Values.addr.Substring(2), 16)
        $m = Get-ProcessMemoryMap -Id $Fixture.Pid | Where-Object Address -eq $addr
        $m.Size | Should -Be 3072KB
        $m.Rss | Should -Be 3072KB
        $m.Perm | Should -Be 'rw-p'
        $m.Fields['Anonymous'] | Should -Be 3072KB   # CoW-shared with the forked child, so Shared_Dirty, not Private_Dirty
        ($m | Out-String -Width 200) | Should -Match ('{0:x}' -f $addr)
    }

    It 'lists [heap] and [stack] of this pwsh' {
        $names = (Get-ProcessMemoryMap -Id $PID).Mapping
        $names | Should -Contain '[heap]'
        $names | Should -Contain '[stack]'
    }
}
