using System.Text.Json;
using LeakTools.Core.Interop;
using LeakTools.Core.ProcFs;
using LeakTools.Core.Symbols;
using LeakTools.Core.Tracing;
using LeakTools.Core.Tracing.Agent;
using Microsoft.Win32.SafeHandles;

namespace LeakTools.Core.Hosting;

/// <summary>Arguments of <c>alloc.watch</c>: attach to <see cref="Pid"/>, or launch <see cref="Program"/>.</summary>
public sealed class WatchRequest
{
    public int Pid { get; set; }
    public string? Program { get; set; }
    public string[] Arguments { get; set; } = Array.Empty<string>();
    public string? WorkingDirectory { get; set; }
    public string[]? Environment { get; set; }
    public double ExpireSeconds { get; set; } = 10;
    public double? DurationSeconds { get; set; }
    public int Depth { get; set; } = 32;
    public string[]? Modules { get; set; }
    public double ProgressSeconds { get; set; } = 1;
    public double StopGraceSeconds { get; set; } = 10;
    /// <summary>Agent (in-process, the default) or Breakpoint (ptrace).</summary>
    public string Engine { get; set; } = AgentEngine.Name;
    /// <summary>The engine was asked for by name: no fallback from the agent to the breakpoint engine.</summary>
    public bool EngineExplicit { get; set; }
    /// <summary>Agent: byte interval of sampling; 0 records every allocation.</summary>
    public long SampleInterval { get; set; }
}

/// <summary>One streamed item of <c>alloc.watch</c>: exactly one of its properties is set.</summary>
public sealed class WatchMessage
{
    public AllocationStack? Stack { get; set; }
    public AllocationProblem? Problem { get; set; }
    public AllocationProgress? Progress { get; set; }
    /// <summary>A line the launched program wrote, with <see cref="Stream"/> Stdout or Stderr.</summary>
    public string? Output { get; set; }
    public string? Stream { get; set; }
}

/// <summary><c>alloc.watch</c>: runs an allocation engine on one process (the in-process agent by
/// default, falling back to the ptrace breakpoint engine where the agent cannot go) and streams the
/// pipeline's reports (stacks as they first expire, bad frees, progress, the final update per
/// stack) until -Duration, cancellation, or the target's exit.</summary>
internal sealed class WatchAllocationCommand : IHelperCommand
{
    /// <summary>In the launched program's environment: the agent does not check frees (no stack
    /// per free, no bad-free reports): the cost of launch mode without checks.</summary>
    public const string NoFreeChecks = "LEAKTOOLS_FREE_CHECKS=0";

    public string Name => "alloc.watch";

    public void Run(JsonElement args, HelperOutput output, CancellationToken cancel)
    {
        var r = args.Deserialize<WatchRequest>(HelperJson.Options)!;
        var options = new BreakpointEngineOptions
        {
            Depth = r.Depth,
            Modules = r.Modules,
            Verbose = output.Verbose,
            Warning = output.Warning,
        };
        var readers = new List<Thread>();
        IAllocationEventSource? engine = null;
        if (r.Program is not null)
        {
            var (outRead, outWrite) = Spawn.Pipe();
            var (errRead, errWrite) = Spawn.Pipe();
            try
            {
                var spec = new LaunchSpec
                {
                    Program = r.Program,
                    Arguments = r.Arguments,
                    WorkingDirectory = r.WorkingDirectory ?? System.Environment.CurrentDirectory,
                    Environment = r.Environment,
                    StdoutFd = outWrite,
                    StderrFd = errWrite,
                };
                if (r.Engine == AgentEngine.Name)
                    engine = TryAgent(r, output, options => AgentEngine.Launch(spec, options, cancel));
                engine ??= BreakpointEngine.Launch(spec, options);
            }
            finally
            {
                Libc.Close(outWrite);
                Libc.Close(errWrite);
            }
            readers.Add(Relay(outRead, "Stdout", output));
            readers.Add(Relay(errRead, "Stderr", output));
            output.Verbose(engine.Engine == AgentEngine.Name
                ? $"Started {r.Program} as process {engine.ProcessId} with the agent preloaded (traced from its first allocation)." +
                  (r.SampleInterval > 0 || r.Environment?.Contains(NoFreeChecks) == true ? "" : " Every free is checked: double and invalid frees are reported.")
                : $"Started {r.Program} as process {engine.ProcessId}, traced from its first instruction.");
        }
        else
        {
            if (r.Engine == AgentEngine.Name)
                engine = TryAgent(r, output, options => AgentEngine.Attach(r.Pid, options, cancel));
            engine ??= BreakpointEngine.Attach(r.Pid, options);
        }

        using (engine)
        {
            int pid = engine.ProcessId;
            ProcessSymbolizer? symbolizer = null;
            string? executable = null; // read with the maps: a short-lived program is gone by the time its stacks are reported
            StackFrame[] Symbolize(ulong[] addresses)
            {
                if (symbolizer is null || addresses.Any(a => symbolizer.FindMapping(a) is null))
                {
                    try
                    {
                        symbolizer = ProcessSymbolizer.ForProcess(pid, SymbolCache.Shared);
                        executable = ProcFields.Link(ProcRoot.Default.File(pid, "exe")) ?? executable;
                    }
                    catch (LeakToolsException) when (symbolizer is not null) { }
                }
                return symbolizer!.ResolveStack(addresses, adjustReturnAddresses: true).ToArray();
            }
            bool IsRuntime(StackFrame frame) => AllocatorFunctions.IsRuntimeFrame(frame, engine.AllocatorModule, executable);
            bool sampling = engine.Engine == AgentEngine.Name && r.SampleInterval > 0;
            var pipeline = new AllocationPipeline(pid, engine.Engine, TimeSpan.FromSeconds(r.ExpireSeconds), tracedFromStart: r.Program is not null, Symbolize, IsRuntime)
            {
                StackReported = s => output.Item(new WatchMessage { Stack = s }),
                ProblemReported = p => output.Item(new WatchMessage { Problem = p }),
                SampleInterval = sampling ? r.SampleInterval : null,
            };
            engine.ProcessExiting = pipeline.SymbolizeLiveStacks;
            if (r.Program is null) output.Verbose($"Attached to process {pid} ({engine.Engine} engine, allocator of {engine.AllocatorModule}); blocks live after {r.ExpireSeconds:0.###} s count as expired.");

            bool launched = r.Program is not null;
            void End()
            {
                if (launched) engine.Terminate(TimeSpan.FromSeconds(r.StopGraceSeconds));
                else engine.Stop();
            }
            using var ticking = new CancellationTokenSource();
            var ticker = new Thread(() =>
            {
                long nextProgress = 0;
                long started = MonotonicClock.Now;
                bool durationDone = false;
                while (!ticking.Token.WaitHandle.WaitOne(100))
                {
                    try
                    {
                        engine.Flush(); // frees the engine buffered count before expiry is judged
                        pipeline.Tick();
                    }
                    catch (Exception ex) when (ex is LeakToolsException or IOException) { output.Warning(ex.Message); }
                    long now = MonotonicClock.Now;
                    if (now >= nextProgress)
                    {
                        output.Item(new WatchMessage { Progress = pipeline.Progress() });
                        nextProgress = now + (long)(r.ProgressSeconds * 1e9);
                    }
                    if (!durationDone && r.DurationSeconds is double d && now - started >= (long)(d * 1e9))
                    {
                        durationDone = true;
                        output.Verbose($"-Duration of {d:0.###} s reached.");
                        End();
                    }
                }
            }) { IsBackground = true, Name = "LeakTools watch ticks" };
            ticker.Start();
            EngineOutcome outcome;
            using (cancel.Register(End))
            {
                try
                {
                    outcome = engine.Run(pipeline, CancellationToken.None);
                }
                finally
                {
                    ticking.Cancel();
                    ticker.Join();
                }
            }
            if (outcome.ProcessEnded && launched) pipeline.ProgramExited();
            if (outcome.ProcessEnded || outcome.Exec) output.Verbose(char.ToUpperInvariant(outcome.Reason[0]) + outcome.Reason[1..] + ".");
            if (outcome.Exec) output.Warning($"Process {pid} executed a new program: tracing ended (the new program was never hooked).");
            pipeline.Finish();
            output.Item(new WatchMessage { Progress = pipeline.Progress() });
        }
        foreach (Thread t in readers) t.Join(TimeSpan.FromSeconds(5));
    }

    /// <summary>The agent, or null (with a warning) when it cannot go where asked and the engine was
    /// not chosen by name: the caller falls back to the breakpoint engine.</summary>
    private static IAllocationEventSource? TryAgent(WatchRequest r, HelperOutput output, Func<AgentSessionOptions, AgentEngine> start)
    {
        var options = new AgentSessionOptions
        {
            Expire = TimeSpan.FromSeconds(r.ExpireSeconds),
            Depth = r.Depth,
            SampleInterval = r.SampleInterval,
            // launch mode checks every free unless the program's environment says not to
            CheckFrees = !(r.Environment ?? Array.Empty<string>()).Contains(NoFreeChecks),
            Verbose = output.Verbose,
            WaitForAllocation = r.DurationSeconds is double d ? TimeSpan.FromSeconds(d) : null,
        };
        try
        {
            AgentEngine engine = start(options);
            engine.Warning = output.Warning;
            return engine;
        }
        catch (LeakToolsException ex) when (!r.EngineExplicit && ex.ErrorId is "AgentUnavailable" or "AgentInjectionFailed" or "AgentNotConnected" or "AgentFailed")
        {
            output.Warning($"{ex.Message} Using the breakpoint engine instead (slower: the process stops at every allocation and free; -Engine Breakpoint chooses it directly).");
            if (r.SampleInterval > 0) output.Warning("-SampleInterval applies to the agent only: the breakpoint engine records every allocation.");
            return null;
        }
    }

    private static Thread Relay(int fd, string stream, HelperOutput output)
    {
        var t = new Thread(() =>
        {
            using var reader = new StreamReader(new FileStream(new SafeFileHandle(fd, true), FileAccess.Read, 1));
            string? line;
            try
            {
                while ((line = reader.ReadLine()) is not null) output.Item(new WatchMessage { Output = line, Stream = stream });
            }
            catch (IOException) { }
        }) { IsBackground = true, Name = $"LeakTools program {stream}" };
        t.Start();
        return t;
    }
}
