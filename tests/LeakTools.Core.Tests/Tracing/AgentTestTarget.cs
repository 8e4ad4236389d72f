using System.Collections.Concurrent;
using LeakTools.Core.Interop;
using LeakTools.Core.Symbols;
using LeakTools.Core.Tracing.Agent;
using LeakTools.Tests.Shared;
using Microsoft.Win32.SafeHandles;

namespace LeakTools.Core.Tests.Tracing;

/// <summary>The agent-workload fixture driven through its stdin (one command a line, "OK" after
/// each), started with posix_spawn (never System.Diagnostics.Process, whose child reaping would
/// swallow ptrace stops and exit statuses) or by an agent launch.</summary>
internal sealed unsafe class AgentTestTarget : IDisposable
{
    private readonly StreamWriter _input;
    private readonly BlockingCollection<string> _lines = new();
    private int? _status;

    private AgentTestTarget(int pid, int stdinWrite, int stdoutRead)
    {
        Pid = pid;
        _input = new StreamWriter(new FileStream(new SafeFileHandle(stdinWrite, true), FileAccess.Write, 1)) { AutoFlush = true, NewLine = "\n" };
        var reader = new StreamReader(new FileStream(new SafeFileHandle(stdoutRead, true), FileAccess.Read, 1));
        new Thread(() =>
        {
            try
            {
                for (string? l; (l = reader.ReadLine()) is not null;) _lines.Add(l);
            }
            catch (IOException) { }
            _lines.CompleteAdding();
        }) { IsBackground = true }.Start();
    }

    public int Pid { get; }

    public static string Workload => FixtureBuilder.Build("agent-workload.c", "-O2 -g -fPIE -pie -ldl", "lt-agent-workload");

    public static string Plugin => FixtureBuilder.Build("agent-plugin.c", "-O2 -g -shared -fPIC", "libagent-plugin.so");

    /// <summary>The agent staged by build.ps1 Build.</summary>
    public static string AgentPath
    {
        get
        {
            string path = StagedAgent.Path;
            if (!File.Exists(path)) throw new InvalidOperationException($"{path} is missing: run build.ps1 Build first (it compiles the agent).");
            return path;
        }
    }

    public static AgentTestTarget Spawn(params string[] args) => SpawnCommand(new[] { Workload }.Concat(args).ToList());

    /// <summary>Starts a command line that ends up exec'ing the workload (same pid).</summary>
    public static AgentTestTarget SpawnCommand(IReadOnlyList<string> argv)
    {
        var (inRead, inWrite) = Interop.Spawn.Pipe();
        var (outRead, outWrite) = Interop.Spawn.Pipe();
        int pid = Interop.Spawn.Start(argv, new Dictionary<int, int> { [0] = inRead, [1] = outWrite });
        Libc.Close(inRead);
        Libc.Close(outWrite);
        var t = new AgentTestTarget(pid, inWrite, outRead);
        t.ExpectReady();
        return t;
    }

    public static (AgentSession Session, AgentTestTarget Target) Launch(AgentSessionOptions options, params string[] args) =>
        LaunchProgram(Workload, options, args);

    /// <summary>Launches <paramref name="program"/> (a fixture that speaks the same READY/OK protocol) with the agent preloaded.</summary>
    public static (AgentSession Session, AgentTestTarget Target) LaunchProgram(string program, AgentSessionOptions options, params string[] args)
    {
        var (inRead, inWrite) = Interop.Spawn.Pipe();
        var (outRead, outWrite) = Interop.Spawn.Pipe();
        AgentSession session;
        try
        {
            session = AgentSession.Launch(new AgentLaunchSpec
            {
                Program = program,
                Arguments = args,
                Descriptors = new Dictionary<int, int> { [0] = inRead, [1] = outWrite },
            }, options, CancellationToken.None);
        }
        finally
        {
            Libc.Close(inRead);
            Libc.Close(outWrite);
        }
        var t = new AgentTestTarget(session.ProcessId, inWrite, outRead) { Launched = true };
        t.ExpectReady();
        return (session, t);
    }

    /// <summary>Launched by an agent session, which reaps it.</summary>
    public bool Launched { get; private init; }

    private void ExpectReady()
    {
        string line = NextLine(TimeSpan.FromSeconds(30));
        if (!line.StartsWith("READY", StringComparison.Ordinal)) throw new InvalidOperationException($"fixture printed '{line}'");
    }

    private string NextLine(TimeSpan timeout)
    {
        if (!_lines.TryTake(out string? line, timeout)) throw new TimeoutException($"fixture {Pid} said nothing for {timeout.TotalSeconds} s");
        return line;
    }

    /// <summary>Sends a command; returns the lines printed before its OK.</summary>
    public List<string> Send(string command, double timeoutSeconds = 30)
    {
        _input.WriteLine(command);
        var lines = new List<string>();
        while (true)
        {
            string line = NextLine(TimeSpan.FromSeconds(timeoutSeconds));
            if (line == "OK") return lines;
            lines.Add(line);
        }
    }

    /// <summary>Sends a command without waiting for its OK (one that ends the fixture).</summary>
    public void Post(string command) => _input.WriteLine(command);

    /// <summary>Closes stdin (the fixture then ends) and reaps it: its wait status.</summary>
    public int CloseAndWait()
    {
        _input.Dispose();
        if (Launched) return -1;
        int status;
        Ptrace.WaitPid(Pid, &status, 0);
        _status = status;
        return status;
    }

    public bool Alive
    {
        get
        {
            try
            {
                return !File.ReadAllText($"/proc/{Pid}/status").Contains("State:\tZ");
            }
            catch (IOException)
            {
                return false; // gone (reaped) between the check and the read
            }
        }
    }

    public string Status => File.ReadAllText($"/proc/{Pid}/status");

    /// <summary>Function names of a stack, innermost first (symbolized while the process lives).</summary>
    public List<string> Functions(IReadOnlyList<ulong> addresses)
    {
        ProcessSymbolizer s = ProcessSymbolizer.ForProcess(Pid, new SymbolCache());
        return s.ResolveStack(addresses).Select(f => f.Function ?? "?").ToList();
    }

    public void Dispose()
    {
        try { _input.Dispose(); } catch (IOException) { }
        if (_status is null && !Launched)
        {
            Libc.Kill(Pid, 9);
            int status;
            Ptrace.WaitPid(Pid, &status, 0);
        }
    }
}
