using System.Text.Json;
using LeakTools.Core.Interop;
using LeakTools.Core.Symbols;
using LeakTools.Core.Tracing;
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

/// <summary><c>alloc.watch</c>: runs the breakpoint engine on one process and streams the
/// pipeline's reports (stacks as they first expire, bad frees, progress, the final update per
/// stack) until -Duration, cancellation, or the target's exit.</summary>
internal sealed class WatchAllocationCommand : IHelperCommand
{
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
        IAllocationEventSource engine;
        if (r.Program is not null)
        {
            var (outRead, outWrite) = Spawn.Pipe();
            var (errRead, errWrite) = Spawn.Pipe();
            try
            {
                engine = BreakpointEngine.Launch(new LaunchSpec
                {
                    Program = r.Program,
                    Arguments = r.Arguments,
                    WorkingDirectory = r.WorkingDirectory ?? System.Environment.CurrentDirectory,
                    Environment = r.Environment,
                    StdoutFd = outWrite,
                    StderrFd = errWrite,
                }, options);
            }
            finally
            {
                Libc.Close(outWrite);
                Libc.Close(errWrite);
            }
            readers.Add(Relay(outRead, "Stdout", output));
            readers.Add(Relay(errRead, "Stderr", output));
            output.Verbose($"Started {r.Program} as process {engine.ProcessId}, traced from its first instruction.");
        }
        else
        {
            engine = BreakpointEngine.Attach(r.Pid, options);
        }

        using (engine)
        {
            int pid = engine.ProcessId;
            ProcessSymbolizer? symbolizer = null;
            StackFrame[] Symbolize(ulong[] addresses)
            {
                if (symbolizer is null || addresses.Any(a => symbolizer.FindMapping(a) is null))
                {
                    try { symbolizer = ProcessSymbolizer.ForProcess(pid, SymbolCache.Shared); }
                    catch (LeakToolsException) when (symbolizer is not null) { }
                }
                return symbolizer!.ResolveStack(addresses, adjustReturnAddresses: true).ToArray();
            }
            bool IsRuntime(StackFrame frame) => AllocatorFunctions.IsRuntimeFrame(frame, engine.AllocatorModule, pid);
            var pipeline = new AllocationPipeline(pid, engine.Engine, TimeSpan.FromSeconds(r.ExpireSeconds), tracedFromStart: r.Program is not null, Symbolize, IsRuntime)
            {
                StackReported = s => output.Item(new WatchMessage { Stack = s }),
                ProblemReported = p => output.Item(new WatchMessage { Problem = p }),
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
