using System.Text.Json;
using LeakTools.Core.Hosting;
using LeakTools.Tests.Shared;
using Xunit;
using Xunit.Abstractions;

namespace LeakTools.Core.Tests.Tracing;

/// <summary>The breakpoint engine on live fixtures, through the helper host (the fixtures are
/// started with System.Diagnostics.Process, whose children in-process ptrace must not touch).</summary>
public sealed class WatchLiveTests : IDisposable
{
    private readonly HelperClient _helper = HelperClient.Start();
    private readonly ITestOutputHelper _log;

    public WatchLiveTests(ITestOutputHelper log) => _log = log;

    public void Dispose() => _helper.Dispose();

    internal static string Server() => FixtureBuilder.Build("alloc-server.c", "-O2 -g -fPIE -pie -fomit-frame-pointer", "lt-alloc-server");

    internal static int SiteLine(string marker) =>
        File.ReadAllLines(Path.Combine(RepoPaths.Fixtures, "alloc-server.c")).Select((l, i) => (l, i)).First(x => x.l.Contains("SITE:" + marker + " ")).i + 1;

    private sealed record Result(List<AllocationStack> Stacks, List<AllocationProblem> Problems, List<string> Output, List<string> Messages, HelperFailure? Failure);

    private Result Watch(WatchRequest request, Action? whileRunning = null, CancellationToken cancel = default)
    {
        var stacks = new List<AllocationStack>();
        var problems = new List<AllocationProblem>();
        var output = new List<string>();
        var messages = new List<string>();
        HelperFailure? failure = null;
        bool started = false;
        foreach (HelperReply r in _helper.Run("alloc.watch", request, cancel))
        {
            if (r.Kind == HelperReplyKind.Item)
            {
                var m = r.Data!.Value.Deserialize<WatchMessage>(HelperJson.Options)!;
                if (m.Stack is not null) stacks.Add(m.Stack);
                if (m.Problem is not null) problems.Add(m.Problem);
                if (m.Output is not null) output.Add(m.Output);
                if (m.Progress is not null && !started)
                {
                    started = true;
                    whileRunning?.Invoke();
                }
            }
            else if (r.Kind is HelperReplyKind.Verbose or HelperReplyKind.Warning) messages.Add(r.Kind + ": " + r.Message);
            else if (r.Kind == HelperReplyKind.Done) failure = r.Failure;
        }
        foreach (string m in messages) _log.WriteLine(m);
        return new Result(stacks, problems, output, messages, failure);
    }

    [LinuxFact("gcc")]
    public void Threads_started_after_attach_are_traced_and_stacks_name_the_call_sites()
    {
        using FixtureProcess f = FixtureProcess.Start(Server());
        var result = Watch(new WatchRequest { Pid = f.Pid, ExpireSeconds = 0.3, DurationSeconds = 2.5 }, () =>
        {
            f.Send("start 3");
        });
        Assert.Null(result.Failure);
        foreach (var s in result.Stacks.Where(s => s.Final)) _log.WriteLine($"{s.StackId} {s.Function} {s.Location} expired {s.ExpiredCount} live {s.LiveCount} alloc {s.AllocationCount}");
        var final = result.Stacks.Where(s => s.Final).ToList();
        Assert.Contains(final, s => s.Function == "leak_malloc" && s.Location == $"alloc-server.c:{SiteLine("malloc")}");
    }

    [LinuxFact("gcc")]
    public void Scratch_bench()
    {
        var result = Watch(new WatchRequest { Program = "/tmp/pt/loop", Arguments = new[] { "200000" }, WorkingDirectory = "/tmp", ExpireSeconds = 5 });
        Assert.Null(result.Failure);
        foreach (string o in result.Output) _log.WriteLine(o);
    }
}
