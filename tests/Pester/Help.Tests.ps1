BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $module = Import-Module (Get-TestModulePath) -PassThru -Force
    $script:Commands = @(Get-Command -Module $module.Name -CommandType Cmdlet | ForEach-Object { @{ Name = $_.Name } })
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:Common = [System.Management.Automation.Cmdlet]::CommonParameters + [System.Management.Automation.Cmdlet]::OptionalCommonParameters
}

Describe 'Help and metadata of <Name>' -ForEach $Commands {
    It 'has a synopsis, a description and examples in Get-Help -Full' {
        $help = Get-Help $Name -Full
        $help.Synopsis | Should -Not -BeNullOrEmpty
        $help.Synopsis | Should -Not -Match "^$Name\s*\["  # the auto-generated stub means no MAML
        ($help.Description | Out-String).Trim() | Should -Not -BeNullOrEmpty
        @($help.Examples.Example).Count | Should -BeGreaterOrEqual 1
        $help.Examples.Example[0].Code | Should -Not -BeNullOrEmpty
    }

    It 'describes every parameter' {
        $help = Get-Help $Name -Full
        $cmd = Get-Command $Name
        foreach ($p in $cmd.Parameters.Keys | Where-Object { $_ -notin $Common }) {
            $entry = $help.Parameters.Parameter | Where-Object Name -eq $p
            $entry | Should -Not -BeNullOrEmpty -Because "-$p needs help"
            ($entry.Description | Out-String).Trim() | Should -Not -BeNullOrEmpty -Because "-$p needs a description"
        }
    }

    It 'declares [OutputType] with a format view' {
        $cmd = Get-Command $Name
        $cmd.OutputType | Should -Not -BeNullOrEmpty
        foreach ($t in $cmd.OutputType | Where-Object Name -like 'LeakTools.*') {
            Get-FormatData -TypeName $t.Name | Should -Not -BeNullOrEmpty
        }
    }
}
