using System;
using System.Diagnostics;
using System.IO;
using System.Threading;
using System.Threading.Tasks;
using LeakTools.Core.Tracing.Agent;

/// <summary>Drives tests/bench/alloc-bench.c: started detached (through sh, so it is no child of
/// this process, as a daemon one attaches to), told "go" through a fifo once the engine is on,
/// its RESULT line read back.</summary>
public sealed class AllocBenchTarget : IDisposable
{
    private readonly string _dir;
    private FileStream? _input;
    public int Pid { get; private set; }
    public string Output => Path.Combine(_dir, "out.txt");

    private AllocBenchTarget(string dir) { _dir = dir; }

    /// <summary>Starts <paramref name="argv"/> detached (prefix e.g. "heaptrack" goes first).</summary>
    public static AllocBenchTarget Start(string dir, string command)
    {
        Directory.CreateDirectory(dir);
        var t = new AllocBenchTarget(dir);
        string fifo = Path.Combine(dir, "in.fifo");
        if (File.Exists(fifo)) File.Delete(fifo);
        Process.Start("mkfifo", fifo)!.WaitForExit();
        File.WriteAllText(t.Output, "");
        var psi = new ProcessStartInfo("sh") { WorkingDirectory = dir };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add($"{command} < '{fifo}' > '{t.Output}' 2>&1 &");
        Process.Start(psi)!.WaitForExit();
        t._input = new FileStream(fifo, FileMode.Open, FileAccess.Write);
        string ready = t.WaitFor("READY pid=", TimeSpan.FromSeconds(30));
        t.Pid = int.Parse(ready.Substring(ready.IndexOf("pid=") + 4).Trim());
        return t;
    }

    public string WaitFor(string prefix, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            foreach (string line in File.ReadAllLines(Output))
                if (line.StartsWith(prefix, StringComparison.Ordinal)) return line;
            Thread.Sleep(20);
        }
        throw new TimeoutException($"no '{prefix}' from the benchmark fixture: {File.ReadAllText(Output)}");
    }

    /// <summary>Starts the loop; returns ns per iteration once it ends.</summary>
    public double Go(TimeSpan timeout)
    {
        _input!.Write("go\n"u8);
        _input.Flush();
        string result = WaitFor("RESULT ", timeout);
        return double.Parse(result.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
    }

    public bool Exited => !File.Exists($"/proc/{Pid}/status") || File.ReadAllText($"/proc/{Pid}/status").Contains("State:\tZ");

    public void Dispose()
    {
        _input?.Dispose();
        if (Pid > 0 && !Exited) { try { Process.GetProcessById(Pid).Kill(); } catch (Exception) { } }
    }
}

/// <summary>An agent session on a background thread, with a sink that only counts.</summary>
public sealed class AgentBenchSession : IDisposable
{
    private readonly AgentSession _session;
    private readonly CancellationTokenSource _cts = new();
    private readonly Task<AgentSessionEnd> _run;
    public AgentRecorder Recorder { get; } = new();

    public AgentBenchSession(AgentSession session)
    {
        _session = session;
        _run = Task.Run(() => _session.Run(Recorder, null, _cts.Token));
    }

    public static AgentBenchSession Attach(int pid, string agent, long sampleInterval) =>
        new(AgentSession.Attach(pid, new AgentSessionOptions { AgentPath = agent, SampleInterval = sampleInterval, WaitForAllocation = TimeSpan.FromSeconds(30) }, CancellationToken.None));

    public string Stop()
    {
        _cts.Cancel();
        return _run.Wait(TimeSpan.FromSeconds(30)) ? _run.Result.ToString() : "timeout";
    }

    public void Dispose()
    {
        if (!_run.IsCompleted) Stop();
        _session.Dispose();
    }
}

/// <summary>Runs the fixture to completion, launched by the agent with its output in a file.</summary>
public static class AgentBenchLaunch
{
    public static double Run(string dir, string exe, string[] args, string agent, long sampleInterval)
    {
        Directory.CreateDirectory(dir);
        string output = Path.Combine(dir, "launch.txt");
        using var file = new FileStream(output, FileMode.Create, FileAccess.Write);
        int fd = (int)file.SafeFileHandle.DangerousGetHandle();
        using AgentSession session = AgentSession.Launch(new AgentLaunchSpec
        {
            Program = exe,
            Arguments = args,
            Descriptors = new System.Collections.Generic.Dictionary<int, int> { [1] = fd },
        }, new AgentSessionOptions { AgentPath = agent, SampleInterval = sampleInterval }, CancellationToken.None);
        var recorder = new AgentRecorder();
        AgentSessionEnd end = session.Run(recorder, TimeSpan.FromMinutes(10), CancellationToken.None);
        if (end != AgentSessionEnd.ProgramExited) throw new InvalidOperationException("agent launch ended with " + end);
        foreach (string line in File.ReadAllLines(output))
            if (line.StartsWith("RESULT ", StringComparison.Ordinal))
                return double.Parse(line.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        throw new InvalidOperationException("no RESULT: " + File.ReadAllText(output));
    }
}
