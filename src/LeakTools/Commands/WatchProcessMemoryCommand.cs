using System.Management.Automation;
using LeakTools.Core;
using LeakTools.Core.Monitoring;
using LeakTools.Core.ProcFs;

namespace LeakTools.Commands;

/// <summary>Watch-ProcessMemory: samples processes' memory on a fixed clock and streams one
/// <see cref="ProcessMemory"/> per process per tick, for Export-Csv and Measure-MemoryTrend.</summary>
[Cmdlet(VerbsCommon.Watch, "ProcessMemory", DefaultParameterSetName = NameSet)]
[OutputType(typeof(ProcessMemory))]
public sealed class WatchProcessMemoryCommand : ProcessTargetCommandBase
{
    private readonly CancellationTokenSource _cancel = new();
    private readonly List<int> _ids = new();

    /// <summary>Time between ticks; a bare number is seconds.</summary>
    [Parameter]
    [DurationTransformation]
    public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Number of ticks, then stop.</summary>
    [Parameter]
    [ValidateRange(1, long.MaxValue)]
    public long Count { get; set; }

    /// <summary>Watch this long (ticks at both ends included), then stop.</summary>
    [Parameter]
    [DurationTransformation]
    public TimeSpan Duration { get; set; }

    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        if (Interval <= TimeSpan.Zero)
            ThrowTerminatingError(ErrorRecords.InvalidArgument("InvalidInterval", $"-Interval must be positive, not {Interval}.", Interval));
        if (MyInvocation.BoundParameters.ContainsKey(nameof(Count)) && MyInvocation.BoundParameters.ContainsKey(nameof(Duration)))
            ThrowTerminatingError(ErrorRecords.InvalidArgument("CountAndDuration", "Give -Count or -Duration, not both.", null));
        if (MyInvocation.BoundParameters.ContainsKey(nameof(Duration)) && Duration < TimeSpan.Zero)
            ThrowTerminatingError(ErrorRecords.InvalidArgument("InvalidDuration", $"-Duration cannot be negative, not {Duration}.", Duration));
    }

    /// <summary>Collects the pids piped in; the watching happens once the input is complete.</summary>
    protected override void ProcessRecord()
    {
        if (ParameterSetName == IdSet) _ids.AddRange(Id);
        else if (ParameterSetName == InputObjectSet) _ids.AddRange(InputObject.Select(p => p.Id));
    }

    protected override void ProcessTarget(ProcessIdentity identity) => throw new NotSupportedException();

    protected override void EndProcessing()
    {
        var scheduler = new TickScheduler(
            Interval,
            MyInvocation.BoundParameters.ContainsKey(nameof(Count)) ? Count : null,
            MyInvocation.BoundParameters.ContainsKey(nameof(Duration)) ? Duration : null);
        bool byName = ParameterSetName == NameSet;
        // Names are resolved at every tick to follow restarts (a new pid is read at once); known
        // pids are re-read every 15-30 s only, to notice one that exec()ed another program. That
        // keeps a tick under a millisecond among hundreds of processes.
        if (byName) IdentityCache = new ProcessIdentityCache(Reader, TimeSpan.FromSeconds(30));
        var watched = new Dictionary<int, string>();
        var remaining = new List<int>(_ids.Distinct());
        var progress = new ProgressRecord(0x6C74, "Watch-ProcessMemory", "Sampling");
        long samples = 0;

        while (scheduler.WaitNext(_cancel.Token))
        {
            bool first = scheduler.Completed == 1;
            var now = new Dictionary<int, string>();
            foreach (ProcessIdentity identity in Targets(byName, first, remaining))
            {
                ProcessMemory? sample = ReadMemoryGuarded(identity, oncePerProcess: true);
                if (sample is null) continue;
                now[identity.Id] = identity.Name;
                WriteObject(sample);
                samples++;
            }
            Follow(watched, now, first);
            if (!byName)
            {
                remaining.RemoveAll(pid => !now.ContainsKey(pid));
                if (remaining.Count == 0)
                {
                    if (!first) WriteWarning("Every watched process has exited; Watch-ProcessMemory stops.");
                    break;
                }
            }
            if (scheduler.Total is { } total)
            {
                progress.PercentComplete = (int)Math.Min(100, scheduler.Completed * 100 / total);
                progress.StatusDescription = $"Tick {scheduler.Completed} of {total}: {samples} sample(s) of {now.Count} process(es)";
                WriteProgress(progress);
            }
        }
        if (scheduler.Total is not null)
        {
            progress.RecordType = ProgressRecordType.Completed;
            WriteProgress(progress);
        }
        if (scheduler.Skipped > 0)
            WriteWarning($"{scheduler.Skipped} tick(s) were skipped because sampling took longer than -Interval {SchedulerFiles.Describe(Interval)}.");
        WarnSkippedProcesses();
    }

    private IEnumerable<ProcessIdentity> Targets(bool byName, bool first, List<int> pids)
    {
        if (byName)
        {
            foreach (ProcessIdentity identity in ResolveTargets(reportNotFound: first)) yield return identity;
            yield break;
        }
        foreach (int pid in pids)
        {
            ProcessIdentity? identity = ReadById(pid, reportNotFound: first);
            if (identity is not null) yield return identity;
        }
    }

    /// <summary>Notes processes that appear (a restart under the same name) and exit.</summary>
    private void Follow(Dictionary<int, string> watched, Dictionary<int, string> now, bool first)
    {
        foreach (var (pid, name) in watched)
        {
            if (now.ContainsKey(pid)) continue;
            string message = $"Process {pid} ({name}) exited.";
            if (AllProcesses) WriteVerbose(message);
            else WriteWarning(message);
        }
        foreach (var (pid, name) in now)
        {
            if (!first && !watched.ContainsKey(pid)) WriteVerbose($"Process {pid} ({name}) appeared; watching it.");
        }
        watched.Clear();
        foreach (var kv in now) watched[kv.Key] = kv.Value;
    }

    protected override void StopProcessing() => _cancel.Cancel();
}
