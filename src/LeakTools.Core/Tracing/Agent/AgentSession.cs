using System.Diagnostics;
using LeakTools.Core.Interop;
using LeakTools.Core.ProcFs;

namespace LeakTools.Core.Tracing.Agent;

/// <summary>Options of an agent session.</summary>
public sealed class AgentSessionOptions
{
    public TimeSpan Expire { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Byte interval of sampling; 0 (the default) records every allocation.</summary>
    public long SampleInterval { get; set; }

    public int Depth { get; set; } = 32;

    /// <summary>Launch mode without sampling: judge every free, so double and invalid frees are
    /// reported (each free then costs an unwind). Attach mode never checks: frees of blocks
    /// allocated before the attach are normal there.</summary>
    public bool CheckFrees { get; set; } = true;

    /// <summary>How often the agent reports; default a tenth of the expiry (20 ms .. 1 s).</summary>
    public TimeSpan? Tick { get; set; }

    /// <summary>The agent library; default the staged one (or LEAKTOOLS_AGENT_PATH).</summary>
    public string? AgentPath { get; set; }

    /// <summary>Attach: how long to wait for a thread to enter malloc or free (null: until cancelled).</summary>
    public TimeSpan? WaitForAllocation { get; set; }

    /// <summary>How long the agent may take to connect once started.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long the agent may take to confirm a detach.</summary>
    public TimeSpan DetachGrace { get; set; } = TimeSpan.FromSeconds(10);

    public Action<string>? Verbose { get; set; }

    internal AgentConfig ToConfig()
    {
        long expire = Math.Max(1, Expire.Ticks * 100);
        return new AgentConfig
        {
            ExpireNanoseconds = expire,
            SampleInterval = Math.Max(0, SampleInterval),
            TickNanoseconds = Tick is TimeSpan t ? t.Ticks * 100 : AgentConfig.TickFor(expire),
            Depth = Math.Clamp(Depth, 2, 128),
            CheckFrees = CheckFrees,
        };
    }
}

/// <summary>A program to start with the agent preloaded.</summary>
public sealed class AgentLaunchSpec
{
    public string Program { get; set; } = "";
    public IReadOnlyList<string> Arguments { get; set; } = Array.Empty<string>();
    /// <summary>Where the program starts; null: ours.</summary>
    public string? WorkingDirectory { get; set; }
    /// <summary>KEY=value entries; default this process's environment.</summary>
    public IReadOnlyList<string>? Environment { get; set; }
    /// <summary>The child's descriptors: child fd -> our fd (stdin reads /dev/null unless given).</summary>
    public IReadOnlyDictionary<int, int> Descriptors { get; set; } = new Dictionary<int, int>();
}

/// <summary>The in-process engine of Watch-Allocation: the agent library hooks the target's
/// allocator from inside (launch: LD_PRELOAD; attach: <see cref="AgentInjector"/>), keeps the live
/// blocks and does the expiry there, and sends only new stacks, expiries, counters and totals. A
/// session ends by asking the agent to unhook (it confirms), by the program's exit, or by the
/// connection dropping; if the controlling side dies the agent sees its socket close and unhooks
/// itself, and the target runs on.</summary>
public sealed class AgentSession : IDisposable
{
    private readonly AgentListener _listener;
    private readonly AgentConnection _connection;
    private readonly int? _childPid;
    private int? _exitStatus;

    private AgentSession(AgentListener listener, AgentConnection connection, int? childPid, bool reused, TimeSpan threadHeld)
    {
        _listener = listener;
        _connection = connection;
        _childPid = childPid;
        Reused = reused;
        ThreadHeld = threadHeld;
    }

    public int ProcessId => _connection.ProcessId;

    /// <summary>Attach mode only: the agent was already loaded by an earlier session.</summary>
    public bool Reused { get; }

    /// <summary>Attach mode only: how long the thread that loaded the agent was held.</summary>
    public TimeSpan ThreadHeld { get; }

    public AgentHello Hello => _connection.Hello;

    public AgentReady Ready => _connection.Ready;

    public AgentConnection Connection => _connection;

    /// <summary>Launch mode, once the program ended: its wait status (exit code in bits 8-15, or the signal).</summary>
    public int? WaitStatus => _exitStatus;

    public static string FindAgent(AgentSessionOptions options) =>
        options.AgentPath ?? AgentPlacement.FindStaged() ?? throw new LeakToolsException(FailureKind.NotSupported, "AgentUnavailable",
            $"The agent library ({AgentPlacement.LibraryName}) is not beside the module (native/linux-x64): build.ps1 Build compiles it with gcc.");

    /// <summary>Loads (or reuses) the agent in running process <paramref name="pid"/> and waits until
    /// it is hooked in. Throws AgentUnavailable (static binary, seccomp, musl, no agent built) or
    /// AgentInjectionFailed: the caller may fall back to the breakpoint engine.</summary>
    public static AgentSession Attach(int pid, AgentSessionOptions options, CancellationToken cancel, ProcRoot? root = null)
    {
        root ??= ProcRoot.Default;
        string staged = FindAgent(options);
        List<RemoteModule> modules = AgentInjector.CheckTarget(pid, root);
        uint uid = ProcFile.TryRead(root.File(pid, "status"), out ReadOnlySpan<byte> st) == 0 && ProcessStatus.Parse(st) is { } s ? s.EffectiveUid : 0;
        // An agent of another build loaded under the same name (an upgrade): load ours beside it.
        string? stale = modules.FirstOrDefault(m => m.FileName == AgentPlacement.LibraryName &&
            AgentPlacement.TryShortHash(m.OpenPath) != AgentPlacement.ShortHash(staged))?.Path;
        var (hostLibrary, targetLibrary) = AgentPlacement.PlaceLibrary(pid, staged, root, (int)uid, stale);
        var (hostDir, targetDir) = AgentPlacement.SocketFolder(pid, root);
        AgentListener listener = AgentListener.Create(hostDir, targetDir);
        using var acceptCancel = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        AgentConfig config = options.ToConfig();
        Task<AgentConnection> accept = Task.Run(() => listener.Accept(pid, config, TimeSpan.FromDays(1), acceptCancel.Token));
        try
        {
            var injector = new AgentInjector(pid, root, options.Verbose);
            int rc = injector.Inject(hostLibrary, targetLibrary, listener.AgentArguments, options.WaitForAllocation, cancel);
            if (rc != 0) throw StartError(pid, rc);
            if (!accept.Wait(options.ConnectTimeout))
            {
                throw new LeakToolsException(FailureKind.SystemError, "AgentNotConnected",
                    $"The agent started in process {pid} but its connection was not accepted within {options.ConnectTimeout.TotalSeconds:0} s.", pid);
            }
            options.Verbose?.Invoke(injector.Reused
                ? $"Reused the agent already loaded in process {pid}; thread {injector.ThreadId} was held {injector.ThreadHeld.TotalMilliseconds:0} ms."
                : $"Loaded {targetLibrary} into process {pid} on thread {injector.ThreadId} (held {injector.ThreadHeld.TotalMilliseconds:0} ms).");
            return new AgentSession(listener, accept.Result, null, injector.Reused, injector.ThreadHeld);
        }
        catch (AggregateException ex) when (ex.InnerException is LeakToolsException inner)
        {
            listener.Dispose();
            throw inner;
        }
        catch
        {
            acceptCancel.Cancel();
            try { accept.Wait(TimeSpan.FromSeconds(2)); } catch (AggregateException) { }
            if (accept.IsCompletedSuccessfully) accept.Result.Dispose();
            listener.Dispose();
            throw;
        }
    }

    private static LeakToolsException StartError(int pid, int rc) => rc switch
    {
        -3 => new LeakToolsException(FailureKind.ResourceBusy, "AgentBusy",
            $"The agent in process {pid} is serving another session (another Watch-Allocation is watching it).", pid),
        -4 => new LeakToolsException(FailureKind.ResourceBusy, "AgentBusy",
            $"The agent in process {pid} is still shutting down its previous session; try again in a moment.", pid),
        -5 => new LeakToolsException(FailureKind.SystemError, "AgentNotConnected",
            $"The agent in process {pid} could not connect to the controller's socket.", pid),
        -8 => new LeakToolsException(FailureKind.NotSupported, "AgentUnavailable",
            $"The agent found no malloc/free definitions in process {pid}'s modules.", pid),
        _ => new LeakToolsException(FailureKind.SystemError, "AgentInjectionFailed",
            $"The agent in process {pid} failed to start (code {rc}).", pid),
    };

    /// <summary>Starts <paramref name="spec"/> with the agent preloaded (LD_PRELOAD, so from its
    /// first allocation; the agent removes itself from the environment, so children are not
    /// traced) and waits until it is hooked in.</summary>
    public static AgentSession Launch(AgentLaunchSpec spec, AgentSessionOptions options, CancellationToken cancel)
    {
        string staged = FindAgent(options);
        string dir = Path.Combine(Path.GetTempPath(), "leaktools-" + Guid.NewGuid().ToString("n")[..16]);
        Directory.CreateDirectory(dir);
        File.SetUnixFileMode(dir, (UnixFileMode)0x1C9);
        AgentListener listener = AgentListener.Create(dir, dir);
        var env = (spec.Environment ?? System.Environment.GetEnvironmentVariables().Keys.Cast<string>()
            .Select(k => $"{k}={System.Environment.GetEnvironmentVariable(k)}")).ToList();
        string? preload = env.FirstOrDefault(e => e.StartsWith("LD_PRELOAD=", StringComparison.Ordinal));
        env.RemoveAll(e => e.StartsWith("LD_PRELOAD=", StringComparison.Ordinal) || e.StartsWith("LEAKTOOLS_AGENT=", StringComparison.Ordinal));
        env.Add("LEAKTOOLS_PRELOAD=" + staged + (preload is null || preload.Length == 11 ? "" : ":" + preload[11..]));
        env.Add("LEAKTOOLS_AGENT=" + listener.AgentArguments);
        // A shell changes to the working folder and execs the program (same pid) with the agent
        // preloaded; the shell itself runs without it.
        var argv = new List<string>
        {
            "/bin/sh", "-c", "cd -- \"$1\" || exit 127; shift; LD_PRELOAD=$LEAKTOOLS_PRELOAD; export LD_PRELOAD; unset LEAKTOOLS_PRELOAD; exec \"$@\"",
            "sh", spec.WorkingDirectory ?? System.Environment.CurrentDirectory, spec.Program,
        };
        argv.AddRange(spec.Arguments);
        int pid;
        try
        {
            pid = Spawn.Start(argv, spec.Descriptors, env);
        }
        catch
        {
            listener.Dispose();
            throw;
        }
        try
        {
            int? status = null;
            AgentConnection connection = listener.Accept(pid, options.ToConfig(), options.ConnectTimeout, cancel,
                giveUp: () => (status ??= TryReap(pid)) is not null);
            return new AgentSession(listener, connection, pid, false, TimeSpan.Zero);
        }
        catch (LeakToolsException ex) when (ex.ErrorId == "AgentNotConnected")
        {
            listener.Dispose();
            bool exited = TryReap(pid) is not null;
            if (!exited) { Libc.Kill(pid, 9); Reap(pid); }
            throw new LeakToolsException(FailureKind.NotSupported, "AgentUnavailable",
                exited
                    ? $"{spec.Program} exited before the agent connected (it could not be started, or it is a static or setuid program, which ignores LD_PRELOAD)."
                    : $"The agent preloaded into {spec.Program} did not connect within {options.ConnectTimeout.TotalSeconds:0} s (a static or setuid program ignores LD_PRELOAD); the program was stopped.", spec.Program, ex);
        }
        catch
        {
            listener.Dispose();
            Libc.Kill(pid, 9);
            Reap(pid);
            throw;
        }
    }

    /// <summary>Feeds <paramref name="sink"/> until the duration passes, <paramref name="cancel"/>
    /// fires (then the agent is asked to unhook) or the program exits. Launch mode reaps the program.</summary>
    public AgentSessionEnd Run(IAgentEventSink sink, TimeSpan? duration, CancellationToken cancel, Func<bool>? stop = null)
    {
        var clock = Stopwatch.StartNew();
        AgentSessionEnd end = _connection.Pump(sink,
            () => (duration is TimeSpan d && clock.Elapsed >= d) || stop?.Invoke() == true,
            cancel, TimeSpan.FromSeconds(10));
        if (_childPid is int child && end != AgentSessionEnd.Detached)
        {
            var wait = Stopwatch.StartNew();
            while (_exitStatus is null && wait.Elapsed < TimeSpan.FromSeconds(10))
            {
                _exitStatus = TryReap(child);
                if (_exitStatus is null) Thread.Sleep(10);
            }
        }
        return end;
    }

    /// <summary>Launch mode: waits for the program to end (after a detach it runs on untraced).</summary>
    public int? WaitForExit(TimeSpan timeout)
    {
        if (_childPid is not int child) return null;
        var wait = Stopwatch.StartNew();
        while (_exitStatus is null && wait.Elapsed < timeout)
        {
            _exitStatus = TryReap(child);
            if (_exitStatus is null) Thread.Sleep(10);
        }
        return _exitStatus;
    }

    private static unsafe int? TryReap(int pid)
    {
        int status;
        int r = Ptrace.WaitPid(pid, &status, Ptrace.WNOHANG);
        return r == pid ? status : null;
    }

    private static unsafe void Reap(int pid)
    {
        int status;
        Ptrace.WaitPid(pid, &status, 0);
    }

    public void Dispose()
    {
        _connection.Dispose();
        _listener.Dispose();
    }
}
