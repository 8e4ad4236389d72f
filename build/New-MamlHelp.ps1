<#
.SYNOPSIS
    Generates MAML help (LeakTools.dll-Help.xml) from docs/<Cmdlet>.md, taking syntax and
    parameter metadata from the built cmdlets themselves (platyPS is not available here).
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $DocsPath,
    [Parameter(Mandatory)] [string] $OutputPath
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
. (Join-Path $PSScriptRoot 'HelpMarkdown.ps1')

$module = Import-Module $ModulePath -PassThru -Force
$ns = @{
    maml    = 'http://schemas.microsoft.com/maml/2004/10'
    command = 'http://schemas.microsoft.com/maml/dev/command/2004/10'
    dev     = 'http://schemas.microsoft.com/maml/dev/2004/10'
}
$common = [System.Management.Automation.Cmdlet]::CommonParameters + [System.Management.Automation.Cmdlet]::OptionalCommonParameters

$settings = [System.Xml.XmlWriterSettings]::new()
$settings.Indent = $true
$settings.Encoding = [System.Text.UTF8Encoding]::new($false)
$null = New-Item -ItemType Directory -Force -Path $OutputPath
$writer = [System.Xml.XmlWriter]::Create((Join-Path $OutputPath 'LeakTools.dll-Help.xml'), $settings)

function Write-Paragraph($w, [string[]] $Paras) {
    $w.WriteStartElement('maml', 'description', $ns.maml)
    foreach ($p in @($Paras)) { $w.WriteElementString('maml', 'para', $ns.maml, $p) }
    $w.WriteEndElement()
}

function Get-PipelineInput($p) {
    $kinds = @()
    if ($p.ValueFromPipeline) { $kinds += 'ByValue' }
    if ($p.ValueFromPipelineByPropertyName) { $kinds += 'ByPropertyName' }
    if ($kinds) { return "True ($($kinds -join ', '))" }
    return 'False'
}

function Write-Parameter($w, $param, $setParam, [string[]] $Description) {
    $type = $param.ParameterType
    $typeName = if ($type -eq [System.Management.Automation.SwitchParameter]) { 'SwitchParameter' } else { $type.Name }
    $position = if ($setParam -and $setParam.Position -ge 0) { [string]$setParam.Position } else { 'named' }
    $required = if ($setParam) { $setParam.IsMandatory } else { @($param.ParameterSets.Values | Where-Object IsMandatory).Count -gt 0 }
    $w.WriteStartElement('command', 'parameter', $ns.command)
    $w.WriteAttributeString('required', $required.ToString().ToLowerInvariant())
    $w.WriteAttributeString('variableLength', $type.IsArray.ToString().ToLowerInvariant())
    $globbing = [bool]($param.Attributes | Where-Object { $_ -is [System.Management.Automation.SupportsWildcardsAttribute] })
    $w.WriteAttributeString('globbing', $globbing.ToString().ToLowerInvariant())
    $pipe = if ($setParam) { Get-PipelineInput $setParam } else { ($param.ParameterSets.Values | ForEach-Object { Get-PipelineInput $_ } | Sort-Object -Unique | Select-Object -Last 1) }
    $w.WriteAttributeString('pipelineInput', $pipe)
    $w.WriteAttributeString('position', $position)
    $w.WriteAttributeString('aliases', $(if ($param.Aliases.Count) { $param.Aliases -join ', ' } else { 'none' }))
    $w.WriteElementString('maml', 'name', $ns.maml, $param.Name)
    Write-Paragraph $w $Description
    if ($typeName -ne 'SwitchParameter') {
        $w.WriteStartElement('command', 'parameterValue', $ns.command)
        $w.WriteAttributeString('required', 'true')
        $w.WriteAttributeString('variableLength', $type.IsArray.ToString().ToLowerInvariant())
        $w.WriteString($typeName)
        $w.WriteEndElement()
    }
    $w.WriteStartElement('dev', 'type', $ns.dev)
    $w.WriteElementString('maml', 'name', $ns.maml, $type.FullName)
    $w.WriteEndElement()
    $w.WriteElementString('dev', 'defaultValue', $ns.dev, 'None')
    $w.WriteEndElement()
}

$writer.WriteStartDocument()
$writer.WriteStartElement('helpItems', 'http://msh')
$writer.WriteAttributeString('schema', 'maml')

foreach ($cmd in Get-Command -Module $module.Name -CommandType Cmdlet | Sort-Object Name) {
    $mdPath = Join-Path $DocsPath "$($cmd.Name).md"
    if (-not (Test-Path $mdPath)) { Write-Warning "No help page $mdPath"; continue }
    $doc = Read-HelpMarkdown $mdPath

    $writer.WriteStartElement('command', 'command', $ns.command)
    $writer.WriteAttributeString('xmlns', 'maml', $null, $ns.maml)
    $writer.WriteAttributeString('xmlns', 'dev', $null, $ns.dev)

    $writer.WriteStartElement('command', 'details', $ns.command)
    $writer.WriteElementString('command', 'name', $ns.command, $cmd.Name)
    $writer.WriteElementString('command', 'verb', $ns.command, $cmd.Verb)
    $writer.WriteElementString('command', 'noun', $ns.command, $cmd.Noun)
    Write-Paragraph $writer @($doc.Synopsis)
    $writer.WriteEndElement()

    Write-Paragraph $writer $doc.Description

    $writer.WriteStartElement('command', 'syntax', $ns.command)
    foreach ($set in $cmd.ParameterSets) {
        $writer.WriteStartElement('command', 'syntaxItem', $ns.command)
        $writer.WriteElementString('maml', 'name', $ns.maml, $cmd.Name)
        foreach ($sp in $set.Parameters | Where-Object { $_.Name -notin $common }) {
            $desc = if ($doc.Parameters.Contains($sp.Name)) { $doc.Parameters[$sp.Name] } else { @() }
            Write-Parameter -w $writer -param $cmd.Parameters[$sp.Name] -setParam $sp -Description $desc
        }
        $writer.WriteEndElement()
    }
    $writer.WriteEndElement()

    $writer.WriteStartElement('command', 'parameters', $ns.command)
    foreach ($param in $cmd.Parameters.Values | Where-Object { $_.Name -notin $common }) {
        $desc = if ($doc.Parameters.Contains($param.Name)) { $doc.Parameters[$param.Name] } else { @() }
        $sets = @($param.ParameterSets.Values)
        Write-Parameter -w $writer -param $param -setParam $(if ($sets.Count -eq 1) { $sets[0] } else { $null }) -Description $desc
    }
    $writer.WriteEndElement()

    $writer.WriteStartElement('command', 'inputTypes', $ns.command)
    foreach ($in in $doc.Inputs) {
        $writer.WriteStartElement('command', 'inputType', $ns.command)
        $writer.WriteStartElement('dev', 'type', $ns.dev); $writer.WriteElementString('maml', 'name', $ns.maml, $in.Type); $writer.WriteEndElement()
        Write-Paragraph $writer $in.Description
        $writer.WriteEndElement()
    }
    $writer.WriteEndElement()

    $writer.WriteStartElement('command', 'returnValues', $ns.command)
    foreach ($o in $doc.Outputs) {
        $writer.WriteStartElement('command', 'returnValue', $ns.command)
        $writer.WriteStartElement('dev', 'type', $ns.dev); $writer.WriteElementString('maml', 'name', $ns.maml, $o.Type); $writer.WriteEndElement()
        Write-Paragraph $writer $o.Description
        $writer.WriteEndElement()
    }
    $writer.WriteEndElement()

    if ($doc.Notes) {
        $writer.WriteStartElement('maml', 'alertSet', $ns.maml)
        $writer.WriteStartElement('maml', 'alert', $ns.maml)
        foreach ($p in $doc.Notes) { $writer.WriteElementString('maml', 'para', $ns.maml, $p) }
        $writer.WriteEndElement(); $writer.WriteEndElement()
    }

    $writer.WriteStartElement('command', 'examples', $ns.command)
    foreach ($ex in $doc.Examples) {
        $writer.WriteStartElement('command', 'example', $ns.command)
        $writer.WriteElementString('maml', 'title', $ns.maml, "--------- $($ex.Title) ---------")
        $writer.WriteElementString('dev', 'code', $ns.dev, $ex.Code)
        $writer.WriteStartElement('dev', 'remarks', $ns.dev)
        foreach ($p in $ex.Remarks) { $writer.WriteElementString('maml', 'para', $ns.maml, $p) }
        $writer.WriteEndElement()
        $writer.WriteEndElement()
    }
    $writer.WriteEndElement()

    $writer.WriteStartElement('command', 'relatedLinks', $ns.command)
    foreach ($l in $doc.Links) {
        $writer.WriteStartElement('maml', 'navigationLink', $ns.maml)
        $writer.WriteElementString('maml', 'linkText', $ns.maml, $l.Text)
        $writer.WriteElementString('maml', 'uri', $ns.maml, $l.Uri)
        $writer.WriteEndElement()
    }
    $writer.WriteEndElement()

    $writer.WriteEndElement() # command:command
}
$writer.WriteEndElement()
$writer.WriteEndDocument()
$writer.Dispose()

# about_ topics: plain text next to the MAML file.
foreach ($about in Get-ChildItem $DocsPath -Filter 'about_*.md') {
    $text = Get-Content -Raw $about.FullName
    $text = $text -replace '(?m)^```\w*\s*$', '' -replace '(?m)^#+\s*', ''
    Set-Content -Path (Join-Path $OutputPath ($about.BaseName + '.help.txt')) -Value $text -Encoding utf8NoBOM
}
exit 0
