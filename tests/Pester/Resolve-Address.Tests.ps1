BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:Work = Join-Path ([IO.Path]::GetTempPath()) "leaktools-pester-symbols-$PID"
    $null = New-Item -ItemType Directory -Force (Join-Path $Work 'served')
    $src = Join-Path $PSScriptRoot '../fixtures/symbols'
    $script:Original = Join-Path $Work 'prog'
    & gcc -O2 -g -o $Original (Join-Path $src 'symbols-main.c') (Join-Path $src 'symbols-util.c')
    if ($LASTEXITCODE -ne 0) { throw 'gcc failed' }
    # Stripped without a debuglink: only a build-id server can give it lines.
    $script:Stripped = Join-Path $Work 'prog-stripped'
    & objcopy --only-keep-debug $Original (Join-Path $Work 'served/prog.debug')
    & objcopy --strip-all $Original $Stripped
    # Debug info removed but .symtab kept: names resolve locally, lines need a server.
    $script:NoDebug = Join-Path $Work 'prog-nodebug'
    & objcopy --strip-debug $Original $NoDebug
    $script:BuildId = ((& readelf -n $Original) -cmatch '^\s+Build ID:' | Select-Object -First 1).Split(':')[1].Trim()
    $script:Leaf = [uint64]('0x' + ((& nm $Original) -match ' leaf_function$').Split(' ')[0])
    $script:Pwsh = Get-PwshCommand
}

AfterAll {
    $pidFile = Join-Path $Work 'server.pid'
    if (Test-Path $pidFile) {
        $serverPid = [int](Get-Content $pidFile)
        if (Get-Process -Id $serverPid -ErrorAction Ignore) { Stop-Process -Id $serverPid -Force -ErrorAction Ignore }
    }
    Remove-Item -Recurse -Force $Work -ErrorAction Ignore
}

Describe 'Resolve-Address' {
    It 'resolves a file address to function and file:line like addr2line' {
        $frame = Resolve-Address -Path $Original ('0x{0:x}' -f $Leaf)
        $expected = & addr2line -f -e $Original ('0x{0:x}' -f $Leaf)
        $frame.Function | Should -Be $expected[0]
        "$($frame.File):$($frame.Line)" | Should -Be ($expected[1] -replace ' \(discriminator \d+\)$', '')
        ($frame | Out-String) | Should -Match 'prog!leaf_function\+0x0'
    }

    It 'fails with NotAnElfFile for a text file' {
        $text = Join-Path $Work 'text.txt'
        Set-Content $text ('x' * 100)
        { Resolve-Address -Path $text 0x10 -ErrorAction Stop } | Should -Throw -ErrorId 'NotAnElfFile,LeakTools.Commands.ResolveAddressCommand'
    }

    It 'fails with ProcessNotFound for a missing pid' {
        { Resolve-Address -Id 999999 0x10 -ErrorAction Stop } | Should -Throw -ErrorId 'ProcessNotFound,LeakTools.Commands.ResolveAddressCommand'
    }

    It 'warns once about an unreachable debuginfod server and still returns local results' {
        # Port 9 on the loopback has no listener: the connection is refused at once.
        $script = @"
Import-Module '$(Get-TestModulePath)'
`$frames = Resolve-Address -Path '$NoDebug' $Leaf -WarningVariable +w -WarningAction SilentlyContinue
`$more = Resolve-Address -Path '$Stripped' $Leaf -WarningVariable +w -WarningAction SilentlyContinue
[pscustomobject]@{ Function = `$frames[0].Function; Line = `$frames[0].Line; Warnings = @(`$w | ForEach-Object Message) } | ConvertTo-Json -Compress
"@
        $file = Join-Path $Work 'unreachable.ps1'
        Set-Content $file $script
        $env:DEBUGINFOD_URLS = 'http://127.0.0.1:9'
        $env:DEBUGINFOD_CACHE_PATH = Join-Path $Work 'cache-unreachable'
        try { $json = & $Pwsh[0] @($Pwsh | Select-Object -Skip 1) -NoProfile -NonInteractive -File $file }
        finally { Remove-Item Env:DEBUGINFOD_URLS, Env:DEBUGINFOD_CACHE_PATH }
        $result = $json | ConvertFrom-Json
        $result.Function | Should -Be 'leaf_function'
        $result.Line | Should -BeNullOrEmpty
        @($result.Warnings).Count | Should -Be 1
        $result.Warnings[0] | Should -Match 'debuginfod server http://127.0.0.1:9 is unreachable'
    }

    It 'downloads the debug file from a real debuginfod server by build-id' -Skip:(-not (Get-Command debuginfod -ErrorAction Ignore) -or -not (Get-Command unshare -ErrorAction Ignore)) {
        # Server and client share a private network namespace: debuginfod binds every address.
        $client = Join-Path $Work 'client.ps1'
        Set-Content $client @"
Import-Module '$(Get-TestModulePath)'
Resolve-Address -Path '$Stripped' $Leaf | Select-Object Function, File, Line | ConvertTo-Json -Compress
"@
        $runner = Join-Path $Work 'debuginfod.sh'
        $pwshLine = ($Pwsh | ForEach-Object { "'$_'" }) -join ' '
        Set-Content $runner @"
set -u
ip link set lo up
debuginfod -F -p 8002 -d '$Work/db.sqlite' -t 60 '$Work/served' > '$Work/debuginfod.log' 2>&1 &
srv=`$!
echo `$srv > '$Work/server.pid'
trap 'kill `$srv 2>/dev/null; wait `$srv 2>/dev/null' EXIT
status=none
for i in `$(seq 1 200); do
  if exec 3<>/dev/tcp/127.0.0.1/8002 2>/dev/null; then
    printf 'GET /buildid/$BuildId/debuginfo HTTP/1.0\r\n\r\n' >&3
    status=`$(head -n 1 <&3 | tr -d '\r')
    exec 3<&-
    case `$status in *" 200 "*) break ;; esac
  fi
  sleep 0.1
done
echo "server: `$status" >&2
DEBUGINFOD_URLS=http://127.0.0.1:8002 DEBUGINFOD_CACHE_PATH='$Work/cache' $pwshLine -NoProfile -NonInteractive -File '$client'
"@
        $json = & timeout 120 unshare -n bash $runner 2>$null
        $frame = $json | ConvertFrom-Json
        $expected = & addr2line -f -e $Original ('0x{0:x}' -f $Leaf)
        $frame.Function | Should -Be 'leaf_function'
        "$($frame.File):$($frame.Line)" | Should -Be ($expected[1] -replace ' \(discriminator \d+\)$', '')
        Join-Path $Work "cache/$BuildId/debuginfo" | Should -Exist
        # The server is gone once the namespace's script ends.
        Get-Process -Id ([int](Get-Content (Join-Path $Work 'server.pid'))) -ErrorAction Ignore | Should -BeNullOrEmpty
    }
}

Describe 'Get-ElfSymbol' {
    It 'lists the functions nm lists' {
        $ours = Get-ElfSymbol $Original -Type FUNC -DefinedOnly | Where-Object Table -eq '.symtab' | ForEach-Object Name | Sort-Object
        $nm = (& nm --defined-only $Original) | Where-Object { $_ -match ' [Tt] ' } | ForEach-Object { $_.Split(' ')[2] } | Sort-Object
        $ours | Should -Be $nm
    }

    It 'shows the debug file''s symbols for a stripped file when one is found' {
        $root = Join-Path $Work 'debug-root'
        $target = Join-Path $root ".build-id/$($BuildId.Substring(0, 2))/$($BuildId.Substring(2)).debug"
        $null = New-Item -ItemType Directory -Force (Split-Path $target)
        Copy-Item (Join-Path $Work 'served/prog.debug') $target
        (Resolve-Address -Path $Stripped $Leaf -DebugDirectory $root).Line | Should -Not -BeNullOrEmpty
    }

    It 'fails with FileNotFound for a missing file' {
        { Get-ElfSymbol /nonexistent/lib.so -ErrorAction Stop } | Should -Throw -ErrorId 'FileNotFound,LeakTools.Commands.GetElfSymbolCommand'
    }
}
