using LeakTools.Core.Tracing;
using Xunit;

namespace LeakTools.Core.Tests.Tracing;

/// <summary>The aggregation half of Watch-Allocation, without a process: expiry, counters, bad
/// frees, reports.</summary>
public sealed class AllocationPipelineTests
{
    private const long Second = 1_000_000_000;

    private static AllocationTable Table(StackStatistics stats, bool fromStart = false) => new(stats, TimeSpan.FromSeconds(10), fromStart);

    [Fact]
    public void A_block_expires_once_for_its_stack_and_a_later_free_counts_as_freed_after_expiry()
    {
        var stats = new StackStatistics();
        var t = Table(stats);
        t.OnStack(1, new ulong[] { 0x10, 0x20 });
        t.OnStack(2, new ulong[] { 0x10, 0x30 });
        t.OnAllocation(0x1000, 100, 1, 7, 1 * Second);
        t.OnAllocation(0x2000, 50, 1, 7, 2 * Second);
        t.OnAllocation(0x3000, 8, 2, 7, 2 * Second);
        t.OnFree(0x3000, 2, 7, 3 * Second);           // freed in time: never expires
        t.ExpireUntil(11 * Second - 1);
        Assert.Equal(0, stats[1]!.ExpiredCount);
        t.ExpireUntil(11 * Second);                    // exactly the expiry: expired (sub-second clock)
        Assert.Equal(1, stats[1]!.ExpiredCount);
        Assert.Equal(new[] { 1 }, stats.TakeNewlyExpired());
        t.ExpireUntil(20 * Second);
        Assert.Equal(2, stats[1]!.ExpiredCount);
        Assert.Equal(150, stats[1]!.ExpiredBytes);
        Assert.Empty(stats.TakeNewlyExpired());        // the stack expired before: reported once
        t.OnFree(0x1000, 2, 7, 21 * Second);
        Assert.Equal(1, stats[1]!.FreedAfterExpiryCount);
        Assert.Equal(1, stats[1]!.LiveCount);
        Assert.Equal(50, stats[1]!.LiveBytes);
        Assert.Equal(0, stats[2]!.ExpiredCount);
        Assert.Equal(0, stats[2]!.LiveCount);
        Assert.Equal(3, t.AllocationsSeen);
        Assert.Equal(2, t.FreesSeen);
    }

    [Fact]
    public void A_reused_address_starts_a_new_block_and_old_queue_entries_do_not_expire_it()
    {
        var stats = new StackStatistics();
        var t = Table(stats);
        t.OnAllocation(0x1000, 10, 1, 1, 0);
        t.OnFree(0x1000, 1, 1, 1 * Second);
        t.OnAllocation(0x1000, 20, 2, 1, 5 * Second);  // same address, new block
        t.ExpireUntil(12 * Second);                     // the first block's time is past, the second's not
        Assert.Equal(0, stats[1]!.ExpiredCount);
        Assert.Equal(0, stats[2]!.ExpiredCount);
        t.ExpireUntil(15 * Second);
        Assert.Equal(1, stats[2]!.ExpiredCount);
        t.OnAllocation(0, 10, 1, 1, 16 * Second);        // NULL: not an allocation
        t.OnFree(0, 1, 1, 16 * Second);                  // free(NULL): nothing
        Assert.Equal(2, t.AllocationsSeen);
        Assert.Empty(t.TakeProblems());
    }

    [Fact]
    public void Double_and_invalid_frees_are_told_apart_with_the_stacks_involved()
    {
        var stats = new StackStatistics();
        var attach = Table(stats);
        attach.OnAllocation(0x1000, 512, 1, 1, 0);
        attach.OnFree(0x1000, 2, 1, 1);
        attach.OnFree(0x1000, 3, 1, 2);
        attach.OnFree(0x9999, 3, 1, 3);                 // allocated before we attached: fine
        FreeProblem p = Assert.Single(attach.TakeProblems());
        Assert.Equal(AllocationProblemKind.DoubleFree, p.Kind);
        Assert.Equal((0x1000UL, 3, 2, 1, 512L), (p.Address, p.FreeStackId, p.FirstFreeStackId!.Value, p.AllocationStackId!.Value, p.Size!.Value));

        var launch = Table(new StackStatistics(), fromStart: true);
        launch.OnFree(0x9999, 3, 1, 3);
        Assert.Equal(AllocationProblemKind.InvalidFree, Assert.Single(launch.TakeProblems()).Kind);
    }

    [Fact]
    public void At_exit_live_blocks_become_unfreed_and_the_pipeline_reports_first_expiry_then_final()
    {
        var reports = new List<AllocationStack>();
        var frames = new Dictionary<ulong, StackFrame>
        {
            [0x10] = new() { Address = 0x10, Module = "/lib/libc.so.6", Function = "malloc" },
            [0x20] = new() { Address = 0x20, Module = "/lib/libc.so.6", Function = "strdup" },
            [0x30] = new() { Address = 0x30, Module = "/usr/bin/daemon", Function = "session_open", File = "/src/daemon.c", Line = 33 },
        };
        int symbolized = 0;
        var pipeline = new AllocationPipeline(42, "Breakpoint", TimeSpan.FromSeconds(1), tracedFromStart: true,
            a => { symbolized++; return a.Select(x => frames[x]).ToArray(); }, f => f.Module.Contains("libc"))
        {
            StackReported = reports.Add,
        };
        pipeline.OnStack(1, new ulong[] { 0x10, 0x20, 0x30 });
        long t0 = MonotonicClock.Now;
        pipeline.OnAllocation(0xa000, 4096, 1, 5, t0);
        pipeline.OnAllocation(0xb000, 4096, 1, 5, t0);
        pipeline.Tick(t0 + 2 * Second);
        pipeline.OnAllocation(0xc000, 100, 1, 5, t0 + 2 * Second);
        pipeline.Tick(t0 + 2 * Second + 1);
        AllocationStack first = Assert.Single(reports);
        Assert.False(first.Final);
        Assert.Equal((2L, 8192L, 2L), (first.ExpiredCount, first.ExpiredBytes, first.LiveCount)); // as at its first expiry
        Assert.Equal(("session_open", "daemon.c:33"), (first.Function, first.Location));
        Assert.Null(first.UnfreedAtExitCount);
        pipeline.OnFree(0xa000, 1, 5, t0 + 3 * Second);
        pipeline.ProgramExited();
        pipeline.Finish();
        AllocationStack final = reports[^1];
        Assert.True(final.Final);
        Assert.Equal((2L, 1L, 2L, 2L, 4196L), (final.ExpiredCount, final.FreedAfterExpiryCount, final.LiveCount, final.UnfreedAtExitCount!.Value, final.UnfreedAtExitBytes!.Value));
        Assert.Equal(3, final.Frames.Length);
        Assert.Equal(1, symbolized);                     // each distinct stack once
        Assert.Equal("Breakpoint", final.Engine);
        Assert.Equal(42, final.ProcessId);
        Assert.NotNull(final.FirstExpired);
        Assert.Equal(3, pipeline.Progress().Allocations);
    }

    [Fact]
    public void An_engine_that_expires_blocks_itself_feeds_the_same_reports_through_the_counter_level()
    {
        var reports = new List<AllocationStack>();
        var pipeline = new AllocationPipeline(7, "Agent", TimeSpan.FromSeconds(1), tracedFromStart: false,
            a => a.Select(x => new StackFrame { Address = x, Module = "/app", Function = "f" + x }).ToArray(), _ => false)
        {
            StackReported = reports.Add,
        };
        IStackCounterSink counters = pipeline;
        counters.OnStack(1, new ulong[] { 0x10, 0x20 });
        counters.Allocated(1, 64);
        counters.Allocated(1, 64);
        counters.Expired(1, 64, 1, MonotonicClock.Now);
        pipeline.Tick();
        counters.Freed(1, 64, wasExpired: true);
        pipeline.Finish();
        Assert.Equal(new[] { false, true }, reports.Select(r => r.Final));
        Assert.Equal((1L, 1L, 1L, "Agent", "f16"), (reports[1].ExpiredCount, reports[1].FreedAfterExpiryCount, reports[1].LiveCount, reports[1].Engine, reports[1].Function));
    }

    [Fact]
    public void A_bad_free_judged_by_the_engine_is_reported_at_once_with_its_three_stacks()
    {
        var problems = new List<AllocationProblem>();
        var frames = new Dictionary<ulong, StackFrame>
        {
            [0x10] = new() { Address = 0x10, Module = "/lib/libc.so.6", Function = "malloc" },
            [0x11] = new() { Address = 0x11, Module = "/lib/libc.so.6", Function = "free" },
            [0x20] = new() { Address = 0x20, Module = "/app", Function = "make", File = "/src/app.c", Line = 5 },
            [0x30] = new() { Address = 0x30, Module = "/app", Function = "drop", File = "/src/app.c", Line = 9 },
            [0x40] = new() { Address = 0x40, Module = "/app", Function = "drop_again", File = "/src/app.c", Line = 14 },
        };
        var pipeline = new AllocationPipeline(7, "Agent", TimeSpan.FromSeconds(10), tracedFromStart: true,
            a => a.Select(x => frames[x]).ToArray(), f => f.Module.Contains("libc"))
        {
            ProblemReported = problems.Add,
        };
        pipeline.OnStack(1, new ulong[] { 0x10, 0x20 });
        pipeline.OnStack(2, new ulong[] { 0x11, 0x30 });
        pipeline.OnStack(3, new ulong[] { 0x11, 0x40 });
        pipeline.OnStack(3, new ulong[] { 0x11, 0x40 });   // the agent may send a stack twice
        IFreeProblemSink sink = pipeline;
        long now = MonotonicClock.Now;
        sink.OnProblem(new FreeProblem(AllocationProblemKind.DoubleFree, 0xa000, 3, 11, now, 512, 1, 2));
        AllocationProblem p = Assert.Single(problems);     // at once, not at the next tick
        Assert.Equal((AllocationProblemKind.DoubleFree, 0xa000UL, 512L, 11, "Agent"), (p.Kind, p.Address, p.Size!.Value, p.ThreadId, p.Engine));
        Assert.Equal(("drop_again", "app.c:14"), (p.Function, p.Location));
        Assert.Equal(new[] { "malloc", "make" }, p.AllocationFrames!.Select(f => f.Function));
        Assert.Equal(new[] { "free", "drop" }, p.FirstFreeFrames!.Select(f => f.Function));
        sink.OnProblem(new FreeProblem(AllocationProblemKind.InvalidFree, 0xb000, 3, 11, now, null, null, null));
        Assert.Equal(2, problems.Count);
        Assert.Null(problems[1].AllocationFrames);
        Assert.Null(problems[1].FirstFreeFrames);
        pipeline.Tick();
        Assert.Equal(2, problems.Count);                    // reported once
    }
}
