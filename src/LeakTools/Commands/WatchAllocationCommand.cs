using System.Collections;
using System.Globalization;
using System.Management.Automation;
using System.Text.Json;
using LeakTools.Core;
using LeakTools.Core.Hosting;
using LeakTools.Core.ProcFs;
using LeakTools.Core.Tracing;

namespace LeakTools.Commands;

/// <summary>Watch-Allocation: traces a process's allocator (attach with -Id/-Name, or launch with
/// -FilePath) and reports, memleax style, the call stacks whose blocks outlive -Expire. The
/// tracer runs in the helper host; this cmdlet only maps parameters and replies.</summary>
[Cmdlet(VerbsCommon.Watch, "Allocation", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(AllocationStack), typeof(AllocationProblem))]
public sealed class WatchAllocationCommand : ProcessTargetCommandBase, IDisposable
{
    private const string LaunchSet = "Launch";
    private readonly CancellationTokenSource _cancel = new();
    private readonly List<ProcessIdentity> _targets = new();

    /// <summary>Launch mode: the program to start traced (a path, or a name on PATH).</summary>
    [Parameter(Mandatory = true, ParameterSetName = LaunchSet)]
    [ValidateNotNullOrEmpty]
    public string FilePath { get; set; } = "";

    /// <summary>Launch mode: the program's arguments.</summary>
    [Parameter(ParameterSetName = LaunchSet)]
    [Alias("Args")]
    public string[] ArgumentList { get; set; } = Array.Empty<string>();

    /// <summary>A block still live this long after its allocation counts as expired (seconds or a TimeSpan; default 10).</summary>
    [Parameter]
    [DurationTransformation]
    public TimeSpan Expire { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>End the session after this long (seconds or a TimeSpan). Without it: Ctrl+C or the target's exit.</summary>
    [Parameter]
    [DurationTransformation]
    public TimeSpan Duration { get; set; }

    /// <summary>Most frames per call stack (default 32, at most 128).</summary>
    [Parameter]
    [ValidateRange(1, 128)]
    public int Depth { get; set; } = 32;

    /// <summary>The module(s) that hold the allocator: jemalloc, tcmalloc, mimalloc, or the executable of a static binary.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string[]? Module { get; set; }

    /// <summary>The engine: Agent (in-process, the default: heaptrack-class overhead) or Breakpoint
    /// (ptrace; no code in the target). Without it, the agent is used where it can go, and the
    /// breakpoint engine (with a warning) where it cannot: static binaries, seccomp, musl.</summary>
    [Parameter]
    [ValidateSet("Agent", "Breakpoint")]
    public string Engine { get; set; } = "Agent";

    /// <summary>Agent only: sample allocations, one per this many bytes on average (e.g. 512KB);
    /// counts become estimates (Estimated = true). Default: every allocation.</summary>
    [Parameter]
    [ValidateRange(1, long.MaxValue)]
    public long SampleInterval { get; set; }

    /// <summary>Write each stack when it first expires even when the output goes on to another
    /// command (by default only the last command of a pipeline gets these live reports; the final
    /// update of every stack is always written).</summary>
    [Parameter]
    public SwitchParameter RealTime { get; set; }

    private bool WantsDuration => MyInvocation.BoundParameters.ContainsKey(nameof(Duration));

    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        if (Expire <= TimeSpan.Zero)
            ThrowTerminatingError(ErrorRecords.InvalidArgument("InvalidExpire", $"-Expire must be greater than zero; {Expire} is not.", Expire));
        if (WantsDuration && Duration <= TimeSpan.Zero)
            ThrowTerminatingError(ErrorRecords.InvalidArgument("InvalidDuration", $"-Duration must be greater than zero; {Duration} is not.", Duration));
        bool engineGiven = MyInvocation.BoundParameters.ContainsKey(nameof(Engine));
        if (Engine == "Breakpoint" && MyInvocation.BoundParameters.ContainsKey(nameof(SampleInterval)))
            ThrowTerminatingError(ErrorRecords.InvalidArgument("SamplingNeedsAgent", "-SampleInterval samples inside the target: it needs -Engine Agent (the breakpoint engine sees every allocation).", SampleInterval));
        if (Module is not null)
        {
            if (engineGiven && Engine == "Agent")
                ThrowTerminatingError(ErrorRecords.InvalidArgument("ModuleNeedsBreakpoint", "-Module names the allocator for the breakpoint engine; the agent hooks whichever allocator the program is bound to. Use -Engine Breakpoint with -Module.", Module));
            Engine = "Breakpoint";
        }
    }

    protected override void ProcessRecord()
    {
        if (ParameterSetName == LaunchSet) return;
        int[]? ids = RequestedIds();
        if (ids is null)
        {
            if (Name is null)
            {
                ThrowTerminatingError(ErrorRecords.InvalidArgument("TargetRequired",
                    "Name the process to watch: Watch-Allocation -Id PID, Watch-Allocation NAME, pipe a process in, or start one with -FilePath.", null));
            }
            base.ProcessRecord();
            return;
        }
        foreach (int pid in ids)
        {
            try
            {
                ProcessIdentity identity = Reader.ReadIdentity(pid);
                if (identity.Status.IsKernelThread)
                {
                    WriteError(ErrorRecords.From(new LeakToolsException(FailureKind.NotSupported, "KernelThread",
                        $"Process {pid} ({identity.Name}) is a kernel thread: it has no user-space allocator to trace.", pid), pid));
                    continue;
                }
                if (identity.Status.IsZombie)
                {
                    WriteError(ErrorRecords.From(new ProcessExitedException(pid), pid));
                    continue;
                }
                _targets.Add(identity);
            }
            catch (LeakToolsException ex)
            {
                WriteError(ErrorRecords.From(ex, pid));
            }
        }
    }

    protected override void ProcessTarget(ProcessIdentity identity) => _targets.Add(identity);

    protected override void EndProcessing()
    {
        base.EndProcessing();
        if (ParameterSetName == LaunchSet)
        {
            var (program, cwd) = ProgramResolution.Resolve(this, FilePath);
            var environment = new List<string>();
            if (!ShouldProcess(program, "Start the program with its allocations traced")) return;
            foreach (DictionaryEntry e in Environment.GetEnvironmentVariables()) environment.Add($"{e.Key}={e.Value}");
            Watch(Request(new WatchRequest { Program = program, Arguments = ArgumentList, WorkingDirectory = cwd, Environment = environment.ToArray() }), program);
            return;
        }
        var targets = _targets.GroupBy(t => t.Id).Select(g => g.First()).ToList();
        if (targets.Count > 1 && !WantsDuration)
        {
            ThrowTerminatingError(ErrorRecords.InvalidArgument("OneTargetAtATime",
                $"{targets.Count} processes matched ({string.Join(", ", targets.Select(t => $"{t.Id} {t.Name}"))}). Watch-Allocation traces one process until Ctrl+C; " +
                "name one, or give -Duration to watch them one after another.", targets.Select(t => t.Id).ToArray()));
        }
        foreach (ProcessIdentity target in targets)
        {
            if (_cancel.IsCancellationRequested) break;
            if (!ShouldProcess($"{target.Id} ({target.Name})", $"Trace allocations ({(Engine == "Agent" ? "load the LeakTools agent into the process" : "ptrace breakpoints on its allocator")})")) continue;
            Watch(Request(new WatchRequest { Pid = target.Id }), target.Id);
        }
    }

    private WatchRequest Request(WatchRequest r)
    {
        r.ExpireSeconds = Expire.TotalSeconds;
        r.DurationSeconds = WantsDuration ? Duration.TotalSeconds : null;
        r.Depth = Depth;
        r.Modules = Module;
        r.Engine = Engine;
        r.EngineExplicit = MyInvocation.BoundParameters.ContainsKey(nameof(Engine)) || Module is not null;
        r.SampleInterval = SampleInterval;
        return r;
    }

    private void Watch(WatchRequest request, object target)
    {
        bool realTime = MyInvocation.BoundParameters.ContainsKey(nameof(RealTime))
            ? RealTime.IsPresent
            : MyInvocation.PipelinePosition >= MyInvocation.PipelineLength;
        HelperClient helper;
        try
        {
            bool running = HelperClient.SharedRunning;
            helper = HelperClient.Shared;
            if (!running) WriteVerbose($"Started the LeakTools helper process {helper.ProcessId}: {helper.Launch}");
        }
        catch (LeakToolsException ex)
        {
            ThrowTerminatingError(ErrorRecords.From(ex, target));
            return;
        }
        string activity = request.Program is null ? $"Watch-Allocation: process {request.Pid}" : $"Watch-Allocation: {Path.GetFileName(request.Program)}";
        var progress = new ProgressRecord(1, activity, "attaching");
        foreach (HelperReply reply in helper.Run("alloc.watch", request, _cancel.Token))
        {
            switch (reply.Kind)
            {
                case HelperReplyKind.Item when reply.Data is JsonElement data:
                    WatchMessage? m = data.Deserialize<WatchMessage>(HelperJson.Options);
                    if (m?.Stack is { } stack && (stack.Final || realTime)) Say(() => WriteObject(stack));
                    else if (m?.Problem is { } problem) Say(() => WriteObject(problem));
                    else if (m?.Output is { } line) Say(() => WriteInformation(line, new[] { m.Stream ?? "Stdout", "Program" }));
                    else if (m?.Progress is { } p)
                    {
                        progress.StatusDescription = string.Format(CultureInfo.CurrentCulture,
                            "{0:0}s  {1:N0} allocations  {2:N0} frees  {3:N0} live blocks ({4:N0} KiB)  {5:N0} stacks, {6:N0} expired",
                            p.Elapsed.TotalSeconds, p.Allocations, p.Frees, p.LiveBlocks, p.LiveBytes / 1024, p.Stacks, p.ExpiredStacks);
                        if (request.DurationSeconds is double d) progress.SecondsRemaining = (int)Math.Max(0, d - p.Elapsed.TotalSeconds);
                        Say(() => WriteProgress(progress));
                    }
                    break;
                case HelperReplyKind.Verbose:
                    Say(() => WriteVerbose(reply.Message));
                    break;
                case HelperReplyKind.Warning:
                    Say(() => WriteWarning(reply.Message));
                    break;
                case HelperReplyKind.Error when reply.Failure is not null:
                    Say(() => WriteError(ErrorRecords.From(reply.Failure.ToException(), target)));
                    break;
                case HelperReplyKind.Done when reply.Failure is not null && !_cancel.IsCancellationRequested:
                    WriteError(ErrorRecords.From(reply.Failure.ToException(), target));
                    break;
            }
        }
        progress.RecordType = ProgressRecordType.Completed;
        Say(() => WriteProgress(progress));
    }

    /// <summary>After Ctrl+C the pipeline refuses output, but the helper's replies are still read
    /// to the end: the tracer detaches (and says so) before this cmdlet returns.</summary>
    private void Say(Action write)
    {
        if (_cancel.IsCancellationRequested) return;
        try { write(); }
        catch (PipelineStoppedException) { _cancel.Cancel(); }
    }

    protected override void StopProcessing() => _cancel.Cancel();

    public void Dispose() => _cancel.Dispose();
}
