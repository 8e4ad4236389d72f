using LeakTools.Core.Interop;
using LeakTools.Core.ProcFs;
using LeakTools.Core.Symbols;

namespace LeakTools.Core.Tracing.Agent;

/// <summary>The in-process agent as an allocation engine of Watch-Allocation: the same pipeline
/// and objects as the breakpoint engine, fed per stack (the agent keeps the live blocks and does
/// the expiry in the target) through <see cref="IStackCounterSink"/>.</summary>
public sealed class AgentEngine : IAllocationEventSource
{
    public const string Name = "Agent";
    private const int SIGINT = 2, SIGKILL = 9;

    private readonly AgentSession _session;
    private readonly AgentSessionOptions _options;
    private readonly bool _launched;
    private volatile bool _stopRequested;
    private Timer? _killTimer;
    private readonly string? _exe;

    private AgentEngine(AgentSession session, AgentSessionOptions options, bool launched)
    {
        _session = session;
        _options = options;
        _launched = launched;
        AllocatorModule = FindAllocatorModule(session.ProcessId, session.Ready.MallocAddress);
        _exe = ProcFields.Link(ProcRoot.Default.File(session.ProcessId, "exe"));
    }

    public string Engine => Name;

    public int ProcessId => _session.ProcessId;

    public string? AllocatorModule { get; }

    public Action? ProcessExiting { get; set; }

    /// <summary>Warnings for the user (fork, a full stack table).</summary>
    public Action<string>? Warning { get; set; }

    public AgentSession Session => _session;

    /// <summary>Loads (or reuses) the agent in <paramref name="pid"/>. Throws AgentUnavailable /
    /// AgentInjectionFailed / AgentNotConnected when it cannot: the caller may fall back.</summary>
    public static AgentEngine Attach(int pid, AgentSessionOptions options, CancellationToken cancel) =>
        new(AgentSession.Attach(pid, options, cancel), options, launched: false);

    /// <summary>Starts <paramref name="spec"/> with the agent preloaded. A static or setuid
    /// program (LD_PRELOAD cannot reach it) throws AgentUnavailable before anything starts.</summary>
    public static AgentEngine Launch(LaunchSpec spec, AgentSessionOptions options, CancellationToken cancel)
    {
        CheckLaunchable(spec.Program);
        var fds = new Dictionary<int, int>();
        if (spec.StdoutFd >= 0) fds[1] = spec.StdoutFd;
        if (spec.StderrFd >= 0) fds[2] = spec.StderrFd;
        AgentSession session = AgentSession.Launch(new AgentLaunchSpec
        {
            Program = spec.Program,
            Arguments = spec.Arguments,
            WorkingDirectory = spec.WorkingDirectory,
            Environment = spec.Environment,
            Descriptors = fds,
        }, options, cancel);
        return new AgentEngine(session, options, launched: true);
    }

    private static void CheckLaunchable(string program)
    {
        const uint PT_INTERP = 3;
        try
        {
            UnixFileMode mode = File.GetUnixFileMode(program);
            if ((mode & (UnixFileMode.SetUser | UnixFileMode.SetGroup)) != 0 && Libc.GetEUid() != 0)
            {
                throw new LeakToolsException(FailureKind.NotSupported, "AgentUnavailable",
                    $"{program} is set-user-ID or set-group-ID: the dynamic loader ignores LD_PRELOAD for it.", program);
            }
            using ElfFile elf = ElfFile.Open(program);
            if (!elf.Segments.Any(s => s.Type == PT_INTERP))
            {
                throw new LeakToolsException(FailureKind.NotSupported, "AgentUnavailable",
                    $"{program} is statically linked: no dynamic loader, so nothing can be preloaded into it.", program);
            }
        }
        catch (LeakToolsException ex) when (ex.ErrorId != "AgentUnavailable")
        {
            // not ELF (a script): its interpreter gets the agent
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }
    }

    private static string? FindAllocatorModule(int pid, ulong malloc)
    {
        try
        {
            List<RemoteModule> modules = RemoteModules.Read(pid, ProcRoot.Default);
            return (modules.FirstOrDefault(m => m.Contains(malloc)) ?? modules.FirstOrDefault(m => m.IsLibc))?.Path;
        }
        catch (LeakToolsException)
        {
            return null;
        }
    }

    public EngineOutcome Run(IAllocationEventSink sink, CancellationToken cancel)
    {
        if (sink is not IStackCounterSink counters)
            throw new ArgumentException("The agent engine reports per stack: the sink must be an IStackCounterSink (AllocationPipeline is).", nameof(sink));
        var adapter = new AgentPipelineAdapter(counters, _options.SampleInterval > 0, () => ProcessExiting?.Invoke(), Warning, ProcessId);
        AgentSessionEnd end = _session.Run(adapter, null, cancel, () => _stopRequested);
        var outcome = new EngineOutcome();
        int pid = ProcessId;
        if (end == AgentSessionEnd.Detached)
        {
            outcome.Reason = $"the agent in process {pid} unhooked itself and stopped on request";
            return outcome;
        }
        int? status = _launched ? _session.WaitForExit(TimeSpan.FromSeconds(10)) : null;
        bool alive = ProcFields.IsAlive(ProcRoot.Default, pid) && status is null;
        if (!alive)
        {
            outcome.ProcessEnded = true;
            if (status is int st && Ptrace.WIfExited(st))
            {
                outcome.ExitCode = Ptrace.WExitStatus(st);
                outcome.Reason = $"process {pid} exited with status {outcome.ExitCode}";
            }
            else if (status is int sig && Ptrace.WIfSignaled(sig))
            {
                outcome.Signal = Ptrace.WTermSig(sig);
                outcome.Reason = $"process {pid} was killed by signal {outcome.Signal}";
            }
            else
            {
                outcome.Reason = $"process {pid} ended";
            }
            return outcome;
        }
        string? exe = ProcFields.Link(ProcRoot.Default.File(pid, "exe"));
        if (exe is not null && exe != _exe)
        {
            // exec replaced the program (and the agent with it: its socket closes on exec)
            outcome.Exec = true;
            outcome.Reason = $"process {pid} executed a new program ({exe}); tracing ended";
            return outcome;
        }
        outcome.Reason = $"the agent in process {pid} stopped answering; it unhooks itself when its connection closes";
        Warning?.Invoke($"The connection to the agent in process {pid} ended without a goodbye; the agent unhooks itself when it sees its connection close.");
        return outcome;
    }

    public void Stop() => _stopRequested = true;

    public void Terminate(TimeSpan grace)
    {
        int pid = ProcessId;
        Libc.Kill(pid, SIGINT);
        _killTimer = new Timer(_ => { if (ProcFields.IsAlive(ProcRoot.Default, pid)) Libc.Kill(pid, SIGKILL); }, null, grace, Timeout.InfiniteTimeSpan);
    }

    /// <summary>The agent reports on its own tick (a tenth of the expiry); nothing is buffered here.</summary>
    public void Flush()
    {
    }

    public void Dispose()
    {
        _killTimer?.Dispose();
        _session.Dispose();
    }
}

/// <summary>Turns the agent's reports into the pipeline's per-stack calls: stacks, first expiries
/// (for the real-time report), absolute counters (estimates when sampling), totals, bad frees;
/// warns once per session when the target forks (children are not traced) and when the agent's stack table is full.</summary>
internal sealed class AgentPipelineAdapter : IAgentEventSink
{
    private readonly IStackCounterSink _sink;
    private readonly bool _sampling;
    private readonly Action _exiting;
    private readonly Action<string>? _warning;
    private readonly int _pid;
    private bool _forkSaid;
    private bool _tableFullSaid;

    public AgentPipelineAdapter(IStackCounterSink sink, bool sampling, Action exiting, Action<string>? warning, int pid)
    {
        _sink = sink;
        _sampling = sampling;
        _exiting = exiting;
        _warning = warning;
        _pid = pid;
    }

    public void OnStack(int stackId, ReadOnlySpan<ulong> addresses) => _sink.OnStack(stackId, addresses);

    public void OnExpired(in AgentExpiry expiry, long expiryTimestamp)
    {
        if (expiry.StackId > 0) _sink.Expired(expiry.StackId, expiry.Size, expiry.Timestamp, expiryTimestamp);
    }

    public void OnCounters(in AgentCounters c)
    {
        if (c.StackId <= 0) return; // allocations the stack table had no room for (said in OnStats)
        StackCounterValues v = _sampling
            ? new StackCounterValues(
                (long)Math.Round(c.EstimatedAllocationCount), c.EstimatedAllocatedBytes,
                (long)Math.Round(c.EstimatedAllocationCount - c.EstimatedFreeCount), c.EstimatedAllocatedBytes - c.EstimatedFreedBytes,
                (long)Math.Round(c.EstimatedExpiredCount), c.EstimatedExpiredBytes, (long)Math.Round(c.EstimatedFreedAfterExpiryCount), true)
            : new StackCounterValues(c.AllocationCount, c.AllocatedBytes, c.LiveCount, c.LiveBytes,
                c.ExpiredCount, c.ExpiredBytes, c.FreedAfterExpiryCount, false);
        _sink.Counters(c.StackId, v);
    }

    public void OnStats(AgentStats s)
    {
        _sink.Totals(s.Allocations, s.Frees, s.LiveBlocks, s.LiveBytes);
        if (s.Forks > 0 && !_forkSaid)
        {
            // Once per session: a server that forks per request would otherwise repeat it on every report.
            _forkSaid = true;
            _warning?.Invoke($"Process {_pid} forked: its children are not traced (the agent unhooks itself in them). Further forks are not reported.");
        }
        if (s.StackTableFull > 0 && !_tableFullSaid)
        {
            _tableFullSaid = true;
            _warning?.Invoke($"The agent's stack table in process {_pid} is full: further new call stacks are counted without their frames.");
        }
    }

    public void OnProgramExit() => _exiting();

    public void OnProblem(in AgentProblem p)
    {
        if (_sink is not IFreeProblemSink problems) return;
        bool twice = p.Kind == AllocationProblemKind.DoubleFree;
        problems.OnProblem(new FreeProblem(p.Kind, p.Address, p.StackId, p.ThreadId, p.Timestamp,
            twice ? p.Size : null, twice && p.AllocationStackId > 0 ? p.AllocationStackId : null, twice && p.FirstFreeStackId > 0 ? p.FirstFreeStackId : null));
    }

    /// <summary>The process may end right after (a bad free glibc aborts on, or the exit): what is
    /// live is symbolized now, as at the exit.</summary>
    public void OnHeld() => _exiting();
}
