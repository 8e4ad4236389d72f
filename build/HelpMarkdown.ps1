# Reads a cmdlet help page written in platyPS's markdown layout (docs/<Cmdlet>.md) into a
# structure that New-MamlHelp.ps1 turns into MAML and Lint.ps1 checks against the cmdlet.

function Split-HelpParagraph([string[]] $Lines) {
    # Paragraphs are separated by blank lines; fenced code blocks stay whole, fences removed.
    $paras = [System.Collections.Generic.List[string]]::new()
    $current = [System.Collections.Generic.List[string]]::new()
    $inCode = $false
    foreach ($line in $Lines) {
        if ($line -match '^\s*```') {
            if ($current.Count) { $paras.Add(($current -join "`n").Trim("`n")); $current.Clear() }
            $inCode = -not $inCode
            if (-not $inCode) { } # closing fence: paragraph already flushed below
            continue
        }
        if ($inCode) { $current.Add($line); continue }
        if ($line.Trim() -eq '') {
            if ($current.Count) { $paras.Add(($current -join "`n").Trim("`n")); $current.Clear() }
            continue
        }
        $current.Add($line)
    }
    if ($current.Count) { $paras.Add(($current -join "`n").Trim("`n")) }
    return , $paras.ToArray()
}

function Read-HelpMarkdown([string] $Path) {
    $lines = Get-Content -LiteralPath $Path
    $doc = [ordered]@{
        Path = $Path; Name = $null; Synopsis = ''; Description = @(); Examples = @(); Parameters = [ordered]@{}
        Inputs = @(); Outputs = @(); Notes = @(); Links = @()
    }
    $i = 0
    if ($lines.Count -and $lines[0] -eq '---') {
        $i = 1
        while ($i -lt $lines.Count -and $lines[$i] -ne '---') { $i++ }
        $i++
    }
    $section = $null; $sub = $null
    $buffer = [System.Collections.Generic.List[string]]::new()
    $inCode = $false

    $flush = {
        $text = @($buffer)
        $buffer.Clear()
        if (-not $section) { return }
        switch ($section) {
            'SYNOPSIS' { $doc.Synopsis = ((Split-HelpParagraph $text) -join ' ').Trim() }
            'DESCRIPTION' { $doc.Description = Split-HelpParagraph $text }
            'EXAMPLES' {
                if (-not $sub) { break }
                $code = [System.Collections.Generic.List[string]]::new(); $remarks = [System.Collections.Generic.List[string]]::new()
                $inBlock = $false; $firstBlockDone = $false; $target = $remarks
                foreach ($l in $text) {
                    if ($l -match '^\s*```') {
                        if (-not $inBlock -and -not $firstBlockDone) { $inBlock = $true; $target = $code; continue }
                        if ($inBlock -and [object]::ReferenceEquals($target, $code)) { $inBlock = $false; $firstBlockDone = $true; $target = $remarks; continue }
                    }
                    $target.Add($l)
                }
                $doc.Examples += [pscustomobject]@{ Title = $sub; Code = ($code -join "`n").Trim(); Remarks = Split-HelpParagraph $remarks }
            }
            'PARAMETERS' {
                if (-not $sub) { break }
                $name = $sub.TrimStart('-')
                $paras = Split-HelpParagraph ($text | Where-Object { $_ -notmatch '^(Type|Parameter Sets|Aliases|Required|Position|Default value|Accept pipeline input|Accept wildcard characters|Accepted values):' })
                $doc.Parameters[$name] = @($paras | Where-Object { $_ -notmatch '^(yaml)?$' })
            }
            'INPUTS' { if ($sub) { $doc.Inputs += [pscustomobject]@{ Type = $sub; Description = Split-HelpParagraph $text } } }
            'OUTPUTS' { if ($sub) { $doc.Outputs += [pscustomobject]@{ Type = $sub; Description = Split-HelpParagraph $text } } }
            'NOTES' { $doc.Notes = Split-HelpParagraph $text }
            'RELATED LINKS' {
                foreach ($l in $text) {
                    if ($l -match '\[([^\]]+)\]\(([^)]*)\)') {
                        $uri = if ($Matches[2] -match '^https?://') { $Matches[2] } else { '' }
                        $doc.Links += [pscustomobject]@{ Text = $Matches[1]; Uri = $uri }
                    }
                }
            }
        }
    }

    for (; $i -lt $lines.Count; $i++) {
        $line = $lines[$i]
        if ($line -match '^\s*```') { $inCode = -not $inCode; $buffer.Add($line); continue }
        if (-not $inCode -and $line -match '^# (\S.*)$' -and -not $doc.Name) { $doc.Name = $Matches[1].Trim(); continue }
        if (-not $inCode -and $line -match '^## (\S.*)$') { & $flush; $section = $Matches[1].Trim().ToUpperInvariant(); $sub = $null; continue }
        if (-not $inCode -and $line -match '^### (\S.*)$') { & $flush; $sub = $Matches[1].Trim(); continue }
        $buffer.Add($line)
    }
    & $flush
    return [pscustomobject]$doc
}
