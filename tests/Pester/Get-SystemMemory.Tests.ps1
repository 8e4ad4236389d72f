BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
}

Describe 'Get-SystemMemory' {
    It 'agrees with free -b on total and swap' -Skip:(-not (Get-Command free -ErrorAction Ignore)) {
        $m = Get-SystemMemory
        $mem = (& free -b | Where-Object { $_ -match '^Mem:' }) -split '\s+'
        $swap = (& free -b | Where-Object { $_ -match '^Swap:' }) -split '\s+'
        $m.Total | Should -Be ([long]$mem[1])
        $m.SwapTotal | Should -Be ([long]$swap[1])
    }

    It 'keeps every meminfo line in Fields' {
        $m = Get-SystemMemory
        $lines = (Get-Content /proc/meminfo).Count
        $m.Fields.Count | Should -Be $lines
        $m.Fields['MemTotal'] | Should -Be $m.Total
    }

    It 'renders its list view' {
        (Get-SystemMemory | Out-String) | Should -Match 'Available\s+:\s+[\d,]+ MiB'
    }
}
