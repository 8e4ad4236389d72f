<#
.SYNOPSIS
    Benchmark: Import-ValgrindLog on a large real report (3,000 loss records, made by running a
    generated C program under valgrind once, XML and text) against the cheapest reading of the
    same file in the same process: the XML loaded into an XmlDocument, the text read line by line
    counting the loss-record headings (a grep, in C#), and Select-String over it (what a user
    would run today). Prints the ratios (records and summary included).
#>
param(
    [string] $ModulePath = (Join-Path $PSScriptRoot '../../out/LeakTools/LeakTools.psd1'),
    [int] $Sites = 1000,
    [int] $Rounds = 9
)
$ErrorActionPreference = 'Stop'
Import-Module $ModulePath -Force
if (-not (Get-Command valgrind -ErrorAction Ignore) -or -not (Get-Command gcc -ErrorAction Ignore)) {
    Write-Host 'valgrind or gcc is not installed: benchmark skipped'
    exit 0
}

Add-Type -TypeDefinition @'
using System.IO;
public static class ValgrindBaseline
{
    // The cheapest reading of a text log: every line, counting loss-record headings (a grep).
    public static int GrepLossRecords(string path)
    {
        int n = 0;
        foreach (string line in File.ReadLines(path)) if (line.Contains(" bytes in ")) n++;
        return n;
    }
}
'@

$work = (New-Item -ItemType Directory -Path (Join-Path ([IO.Path]::GetTempPath()) "leaktools-vgbench-$PID")).FullName
try {
    # $Sites leaking functions, each reached from three callers: 3 x $Sites distinct loss records.
    $c = [System.Text.StringBuilder]::new("#include <stdlib.h>`n")
    for ($i = 0; $i -lt $Sites; $i++) { $null = $c.AppendLine("__attribute__((noinline)) void leak_$i(void) { malloc($($i % 200 + 1)); }") }
    $null = $c.AppendLine('typedef void (*fn)(void); static fn table[] = {')
    for ($i = 0; $i -lt $Sites; $i++) { $null = $c.Append("leak_$i,") }
    $null = $c.AppendLine('};')
    foreach ($caller in 'a', 'b', 'c') { $null = $c.AppendLine("__attribute__((noinline)) void caller_$caller(int i) { table[i](); }") }
    $null = $c.AppendLine("int main(void) { for (int i = 0; i < $Sites; i++) { caller_a(i); caller_b(i); caller_c(i); } return 0; }")
    Set-Content (Join-Path $work 'many.c') $c.ToString()
    & gcc -w -O0 -g -o (Join-Path $work 'many') (Join-Path $work 'many.c')
    $xml = Join-Path $work 'many.xml'
    $txt = Join-Path $work 'many.txt'
    & valgrind --leak-check=full --xml=yes "--xml-file=$xml" --log-file=/dev/null (Join-Path $work 'many')
    & valgrind --leak-check=full "--log-file=$txt" (Join-Path $work 'many')

    $median = { param($list) $s = @($list | Sort-Object); $s[[int][math]::Floor($s.Count / 2)] }
    $measure = {
        param([scriptblock] $Baseline, [scriptblock] $Ours)
        $sw = [System.Diagnostics.Stopwatch]::new()
        $b = [System.Collections.Generic.List[double]]::new(); $o = [System.Collections.Generic.List[double]]::new()
        for ($w = 0; $w -lt 2; $w++) { $null = & $Baseline; $null = & $Ours }
        for ($r = 0; $r -lt $Rounds; $r++) {
            $sw.Restart(); $null = & $Baseline; $sw.Stop(); $b.Add($sw.Elapsed.TotalMilliseconds)
            $sw.Restart(); $null = & $Ours; $sw.Stop(); $o.Add($sw.Elapsed.TotalMilliseconds)
        }
        , @((& $median $b), (& $median $o))
    }

    $records = @(Import-ValgrindLog $xml | Where-Object { $_ -is [LeakTools.LeakRecord] }).Count
    $textRecords = @(Import-ValgrindLog $txt | Where-Object { $_ -is [LeakTools.LeakRecord] }).Count
    $x = & $measure { $d = [System.Xml.XmlDocument]::new(); $d.Load($xml); $d.DocumentElement.ChildNodes.Count } { Import-ValgrindLog $xml }
    $t = & $measure { [ValgrindBaseline]::GrepLossRecords($txt) } { Import-ValgrindLog $txt }
    $ss = & $measure { Select-String -Path $txt -Pattern ' bytes in ' } { Import-ValgrindLog $txt }
    Write-Host ('Import-ValgrindLog on one valgrind run with {0} loss records ({1} rounds, medians)' -f $records, $Rounds)
    Write-Host ('  XML  {0,6:N1} MB: XmlDocument.Load (baseline) {1,8:N1} ms   Import-ValgrindLog {2,8:N1} ms   ratio {3,5:N2}x' -f ((Get-Item $xml).Length / 1MB), $x[0], $x[1], ($x[1] / $x[0]))
    Write-Host ('  text {0,6:N1} MB: line grep     (baseline)    {1,8:N1} ms   Import-ValgrindLog {2,8:N1} ms   ratio {3,5:N2}x  ({4} records)' -f ((Get-Item $txt).Length / 1MB), $t[0], $t[1], ($t[1] / $t[0]), $textRecords)
    Write-Host ('  text {0,6:N1} MB: Select-String (baseline)    {1,8:N1} ms   Import-ValgrindLog {2,8:N1} ms   ratio {3,5:N2}x' -f ((Get-Item $txt).Length / 1MB), $ss[0], $ss[1], ($ss[1] / $ss[0]))
}
finally {
    Remove-Item -Recurse -Force $work -ErrorAction Ignore
}
exit 0
