<#
.SYNOPSIS
    Lint: checks every script parses, every exported cmdlet has an approved verb, [OutputType], a
    format view for each output type, and a complete help page; the manifests (staged and repo
    root) are valid and export exactly the cmdlets the assembly holds; and PSScriptAnalyzer
    (-Settings PSGallery) finds nothing in any script, the staged module or the root manifest.
#>
param(
    [Parameter(Mandatory)] [string] $Root,
    [Parameter(Mandatory)] [string] $ModulePath
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
. (Join-Path $PSScriptRoot 'HelpMarkdown.ps1')

$problems = [System.Collections.Generic.List[string]]::new()
$checks = 0

# 1. Every script, module and data file parses.
$skip = [regex]'[\\/](out|bin|obj|TestResults)[\\/]'
foreach ($file in Get-ChildItem $Root -Recurse -File -Include *.ps1, *.psm1, *.psd1 | Where-Object { -not $skip.IsMatch($_.FullName) }) {
    $checks++
    $tokens = $null; $errors = $null
    $null = [System.Management.Automation.Language.Parser]::ParseFile($file.FullName, [ref]$tokens, [ref]$errors)
    foreach ($e in $errors) { $problems.Add("$($file.FullName):$($e.Extent.StartLineNumber): $($e.Message)") }
}

# 2. The staged manifest is valid and exports what the assembly has.
$checks++
try { $null = Test-ModuleManifest -Path $ModulePath -ErrorAction Stop }
catch { $problems.Add("Test-ModuleManifest: $($_.Exception.Message)") }
$data = Import-PowerShellDataFile $ModulePath
foreach ($key in 'CmdletsToExport', 'FormatsToProcess', 'TypesToProcess', 'CompatiblePSEditions', 'PowerShellVersion') {
    if (-not $data.ContainsKey($key)) { $problems.Add("LeakTools.psd1 lacks $key") }
}
if ($data.CmdletsToExport -contains '*') { $problems.Add('CmdletsToExport must list cmdlets explicitly') }

$module = Import-Module $ModulePath -PassThru -Force
$assembly = $module.ImplementingAssembly
$inAssembly = @($assembly.GetTypes() | Where-Object { -not $_.IsAbstract } | ForEach-Object {
        $attr = [System.Attribute]::GetCustomAttribute($_, [System.Management.Automation.CmdletAttribute])
        if ($attr) { "$($attr.VerbName)-$($attr.NounName)" }
    })
foreach ($c in $inAssembly) { if ($c -notin $data.CmdletsToExport) { $problems.Add("Cmdlet $c is not in CmdletsToExport") } }
foreach ($c in $data.CmdletsToExport) { if ($c -notin $inAssembly) { $problems.Add("CmdletsToExport names $c, which the assembly lacks") } }

# 3. Each exported cmdlet: verb, OutputType, views, help page.
$verbs = (Get-Verb).Verb
$common = [System.Management.Automation.Cmdlet]::CommonParameters + [System.Management.Automation.Cmdlet]::OptionalCommonParameters
foreach ($cmd in Get-Command -Module $module.Name -CommandType Cmdlet) {
    $checks++
    $name = $cmd.Name
    if ($cmd.Verb -notin $verbs) { $problems.Add("$name uses an unapproved verb '$($cmd.Verb)'") }
    if (-not $cmd.OutputType) { $problems.Add("$name has no [OutputType]") }
    foreach ($t in $cmd.OutputType) {
        $typeName = $t.Name
        if ($typeName -notlike 'LeakTools.*') { continue }
        if (-not (Get-FormatData -TypeName $typeName)) { $problems.Add("$name outputs $typeName, which has no format view") }
    }
    $md = Join-Path $Root "docs/$name.md"
    if (-not (Test-Path $md)) { $problems.Add("$name has no docs/$name.md"); continue }
    $doc = Read-HelpMarkdown $md
    if ($doc.Name -ne $name) { $problems.Add("docs/$name.md is titled '$($doc.Name)'") }
    if (-not $doc.Synopsis) { $problems.Add("docs/$name.md has no SYNOPSIS") }
    if (-not $doc.Description) { $problems.Add("docs/$name.md has no DESCRIPTION") }
    if (-not $doc.Examples) { $problems.Add("docs/$name.md has no EXAMPLES") }
    foreach ($ex in $doc.Examples) {
        if (-not $ex.Code) { $problems.Add("docs/$name.md example '$($ex.Title)' has no code") ; continue }
        $errs = $null
        $null = [System.Management.Automation.Language.Parser]::ParseInput($ex.Code, [ref]$null, [ref]$errs)
        if ($errs) { $problems.Add("docs/$name.md example '$($ex.Title)' does not parse: $($errs[0].Message)") }
    }
    if (-not $doc.Outputs) { $problems.Add("docs/$name.md has no OUTPUTS") }
    foreach ($p in $cmd.Parameters.Keys | Where-Object { $_ -notin $common }) {
        if (-not $doc.Parameters.Contains($p) -or -not $doc.Parameters[$p]) { $problems.Add("docs/$name.md does not describe -$p") }
    }
    foreach ($p in $doc.Parameters.Keys) {
        if ($p -eq 'CommonParameters') { continue }
        if (-not $cmd.Parameters.ContainsKey($p)) { $problems.Add("docs/$name.md describes -$p, which $name lacks") }
    }
    $help = Get-Help $name -Full
    if (-not $help.Synopsis -or $help.Synopsis -match '^\s*\S+\s+\[') { $problems.Add("Get-Help $name shows no synopsis (MAML missing?)") }
    if (-not $help.Examples) { $problems.Add("Get-Help $name -Full shows no examples") }
}

# 4. PSScriptAnalyzer with the gallery's rules on every script, the staged module and the
#    repo-root manifest; any finding fails. build.ps1 Lint puts ../shared/tools/modules on
#    PSModulePath; without the analyzer the lint fails and says where it looked.
$analyzer = Get-Module -ListAvailable PSScriptAnalyzer | Where-Object Version -eq '1.25.0' | Select-Object -First 1
if (-not $analyzer) {
    $problems.Add("PSScriptAnalyzer 1.25.0 not found on PSModulePath ($env:PSModulePath). Put it at ../shared/tools/modules/PSScriptAnalyzer/1.25.0 beside the repository (build.ps1 Lint and .ci/run add that folder), or install it.")
}
else {
    Import-Module $analyzer.Path -Force
    $targets = @(Get-ChildItem $Root -Recurse -File -Include *.ps1, *.psm1, *.psd1 | Where-Object { -not $skip.IsMatch($_.FullName) } | ForEach-Object FullName)
    $targets += @(Get-ChildItem (Split-Path $ModulePath -Parent) -Recurse -File -Include *.ps1, *.psm1, *.psd1 | ForEach-Object FullName)
    $findings = 0
    foreach ($target in $targets) {
        $checks++
        foreach ($f in Invoke-ScriptAnalyzer -Path $target -Settings PSGallery) {
            $findings++
            $problems.Add("PSScriptAnalyzer $($f.RuleName) ($($f.Severity)) $($f.ScriptPath):$($f.Line): $($f.Message)")
        }
    }
    Write-Host ("  PSScriptAnalyzer {0}: {1} file(s), {2} finding(s)" -f $analyzer.Version, $targets.Count, $findings)
}

# 5. The repo-root manifest is valid as it stands: every file it names resolves from the repo
#    (format and types files under module/, staged under the same relative paths). Its RootModule,
#    LeakTools.dll, is the build's output and exists only in the staged copy checked above.
$checks++
$rootManifest = Join-Path $Root 'LeakTools.psd1'
$null = Test-ModuleManifest -Path $rootManifest -ErrorAction SilentlyContinue -ErrorVariable manifestErrors
foreach ($e in $manifestErrors | Where-Object { $_.FullyQualifiedErrorId -notlike 'Modules_InvalidRootModuleInModuleManifest,*' }) {
    $problems.Add("Test-ModuleManifest (repo root): $($e.Exception.Message)")
}

foreach ($p in $problems) { Write-Host "  LINT: $p" }
Write-Host ("  Lint: {0} checks, {1} problem(s)" -f $checks, $problems.Count)
exit ([int]($problems.Count -gt 0))
