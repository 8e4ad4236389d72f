using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using LeakTools.Core.Dumps;
using LeakTools.Core.Hosting;
using LeakTools.Core.ProcFs;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Core.Tests.Dumps;

/// <summary>Live snapshots of tests/fixtures/core-threads.c, started by this test process with
/// System.Diagnostics.Process — the case where in-process ptrace loses its stops — and taken
/// through the helper host, then checked with gdb, readelf, eu-readelf and gcore.</summary>
public sealed class SnapshotLiveTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("leaktools-snap-").FullName;
    private readonly HelperClient _helper = HelperClient.Start();

    public void Dispose()
    {
        _helper.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private static FixtureProcess StartFixture(int heapMiB = 48) =>
        FixtureProcess.Start(FixtureBuilder.Build("core-threads.c", "-O0 -g", "lt-core-threads"), heapMiB.ToString());

    private (CoreDump? Dump, HelperFailure? Failure, List<string> Verbose) Snapshot(SnapshotRequest request)
    {
        CoreDump? dump = null;
        HelperFailure? failure = null;
        var verbose = new List<string>();
        foreach (HelperReply r in _helper.Run("core.snapshot", request))
        {
            if (r.Kind == HelperReplyKind.Item) dump = r.Data!.Value.Deserialize<CoreDump>(HelperJson.Options);
            if (r.Kind == HelperReplyKind.Verbose) verbose.Add(r.Message!);
            if (r.Kind == HelperReplyKind.Done) failure = r.Failure;
        }
        return (dump, failure, verbose);
    }

    private static string Sum(FixtureProcess f)
    {
        f.Send("sum");
        return f.ReadLine(TimeSpan.FromSeconds(10)) ?? "no answer";
    }

    [LinuxFact("gcc", "gdb", "readelf")]
    public void Snapshot_opens_in_gdb_with_every_thread_and_the_process_runs_on()
    {
        using FixtureProcess f = StartFixture();
        string before = Sum(f);
        var (dump, failure, verbose) = Snapshot(new SnapshotRequest { Pid = f.Pid, Destination = _dir });
        Assert.Null(failure);
        Assert.NotNull(dump);

        // The target goes on exactly as before: not traced, same memory, still answering.
        string status = File.ReadAllText($"/proc/{f.Pid}/status");
        Assert.Matches(@"TracerPid:\s+0\n", status);
        Assert.Equal(before, Sum(f));

        Assert.Equal(CoreDumpSource.Snapshot, dump!.Source);
        Assert.Equal(f.Pid, dump.Id);
        Assert.Equal("lt-core-threads", dump.Name);
        Assert.Equal(5, dump.Threads);
        Assert.True(dump.FreezeTime > TimeSpan.Zero && dump.FreezeTime < TimeSpan.FromSeconds(5), $"freeze {dump.FreezeTime}");
        Assert.Contains(verbose, v => v.Contains("was stopped for"));
        Assert.Equal(new[] { Path.GetFileName(dump.Path) }, Directory.GetFiles(_dir).Select(Path.GetFileName)); // no partial file

        using (CoreFile core = CoreFile.Open(dump.Path))
        {
            Assert.Null(core.Problem);
            var tids = Directory.GetDirectories($"/proc/{f.Pid}/task").Select(d => int.Parse(Path.GetFileName(d))).Order();
            Assert.Equal(tids, core.Threads.Select(t => t.Tid).Order());
            Assert.Equal(f.Pid, core.Threads[0].Tid);                     // the main thread first, as the kernel's dumping thread
            byte[] magic = new byte[20];
            Assert.Equal(20, core.ReadMemory(f.Hex("heap"), magic));
            Assert.Equal("LEAKTOOLS-CORE-MAGIC", System.Text.Encoding.ASCII.GetString(magic));
            Assert.Equal(f.Pid, core.Process!.Pid);
            Assert.Contains(core.Files, m => m.Path.EndsWith("/lt-core-threads"));
            Assert.EndsWith("/lt-core-threads", core.Executable);
            Assert.True(core.IsSnapshot);
            Assert.Equal(dump.FreezeTime!.Value.Ticks / 10, long.Parse(core.LeakToolsInfo["freeze_us"]));
        }

        string exe = FixtureBuilder.Build("core-threads.c", "-O0 -g", "lt-core-threads");
        string bt = Tools.Run("gdb", "-batch", "-nx", "-ex", "thread apply all bt", exe, dump.Path);
        foreach (string fn in new[] { "park_alpha", "park_beta", "park_gamma", "heartbeat", "main" }) Assert.Contains(fn, bt);
        Assert.Equal(5, Regex.Matches(bt, @"^Thread \d+ ", RegexOptions.Multiline).Count);

        foreach (string tool in new[] { "readelf", "eu-readelf" })
        {
            if (!LinuxFactAttribute.ToolExists(tool)) continue;
            string notes = Tools.Run(tool, "-n", dump.Path);
            Assert.Equal(5, Regex.Matches(notes, "PRSTATUS").Count);
            foreach (string n in new[] { "PRPSINFO", "SIGINFO", "AUXV", "FILE", "FPREGSET", "XSTATE" }) Assert.Contains(n, notes);
        }
    }

    [LinuxFact("gcc", "gcore")]
    public void Snapshot_holds_the_same_heap_as_gcore_and_is_read_like_a_gcore_core()
    {
        using FixtureProcess f = StartFixture(16);
        var (dump, failure, _) = Snapshot(new SnapshotRequest { Pid = f.Pid, Destination = _dir, Compress = true });
        Assert.Null(failure);
        Assert.EndsWith(".zst", dump!.Path);
        Assert.Equal("zstd", dump.Compression);

        string gcoreBase = Path.Combine(_dir, "gcore");
        Tools.Run("gcore", "-o", gcoreBase, f.Pid.ToString());
        using CoreFile ours = CoreFile.Open(dump.Path);
        using CoreFile theirs = CoreFile.Open($"{gcoreBase}.{f.Pid}");
        Assert.Equal(theirs.Threads.Select(t => t.Tid).Order(), ours.Threads.Select(t => t.Tid).Order());
        byte[] a = new byte[1 << 20], b = new byte[1 << 20];
        Assert.Equal(a.Length, ours.ReadMemory(f.Hex("heap"), a));
        Assert.Equal(b.Length, theirs.ReadMemory(f.Hex("heap"), b));
        Assert.True(a.AsSpan().SequenceEqual(b));
        // Every written (anonymous or private dirty) region gcore kept, we kept too.
        foreach (CoreSegment s in theirs.Segments.Where(s => s.Writable && s.FileSize > 0))
        {
            CoreSegment? mine = ours.FindSegment(s.VirtualAddress);
            Assert.True(mine is not null && mine.FileSize > 0, $"gcore has {s.VirtualAddress:x}+{s.FileSize:x}, the snapshot has not");
        }
    }

    [LinuxFact("gcc")]
    public void Bad_targets_and_destinations_fail_cleanly_without_leaving_files()
    {
        Assert.Equal("ProcessNotFound", Snapshot(new SnapshotRequest { Pid = 999_999, Destination = _dir }).Failure!.ErrorId);
        Assert.Equal("KernelThread", Snapshot(new SnapshotRequest { Pid = 2, Destination = _dir }).Failure!.ErrorId);
        using FixtureProcess f = StartFixture(4);
        Assert.Equal("DestinationNotFound", Snapshot(new SnapshotRequest { Pid = f.Pid, Destination = Path.Combine(_dir, "missing") }).Failure!.ErrorId);
        Assert.Equal("DestinationNotWritable", Snapshot(new SnapshotRequest { Pid = f.Pid, Destination = "/proc/self" }).Failure!.ErrorId);
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
        Assert.Matches(@"TracerPid:\s+0\n", File.ReadAllText($"/proc/{f.Pid}/status"));
    }

    [LinuxFact("sh", "sleep")]
    public void A_zombie_is_reported_as_such()
    {
        // sh forks "sleep 0" and becomes "sleep 30", which never reaps it: a zombie child.
        using var parent = Process.Start(new ProcessStartInfo("sh", new[] { "-c", "sleep 0 & exec sleep 30" }) { RedirectStandardInput = true })!;
        try
        {
            int zombie = 0;
            for (int i = 0; i < 200 && zombie == 0; i++)
            {
                string children = File.ReadAllText($"/proc/{parent.Id}/task/{parent.Id}/children").Trim();
                if (children.Length > 0 && int.TryParse(children.Split(' ')[0], out int child) && ProcFields.State(ProcRoot.Default, child) == 'Z') zombie = child;
                else Thread.Sleep(20);
            }
            Assert.NotEqual(0, zombie);
            HelperFailure failure = Snapshot(new SnapshotRequest { Pid = zombie, Destination = _dir }).Failure!;
            Assert.Equal("ProcessIsZombie", failure.ErrorId);
            Assert.Equal(FailureKind.ProcessExited, failure.Kind);
        }
        finally
        {
            parent.Kill();
            parent.WaitForExit();
        }
    }

    [LinuxFact("gcc", "gdb")]
    public void A_process_held_by_a_debugger_is_reported_as_already_traced()
    {
        using FixtureProcess f = StartFixture(4);
        using var gdb = Process.Start(new ProcessStartInfo("gdb", $"-q -nx -batch -p {f.Pid} -ex \"shell sleep 4\"")
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
        })!;
        var sw = Stopwatch.StartNew();
        while (!Regex.IsMatch(File.ReadAllText($"/proc/{f.Pid}/status"), @"TracerPid:\s+[1-9]") && sw.Elapsed < TimeSpan.FromSeconds(10)) Thread.Sleep(20);
        HelperFailure? failure = Snapshot(new SnapshotRequest { Pid = f.Pid, Destination = _dir }).Failure;
        gdb.WaitForExit();
        Assert.Equal("AlreadyTraced", failure!.ErrorId);
        Assert.Equal(FailureKind.ResourceBusy, failure.Kind);
        Assert.Contains("gdb", failure.Message);
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }

    [Fact]
    public void Helper_host_is_a_separate_process_that_streams_and_cancels()
    {
        var replies = _helper.Run("host.echo", new { hello = "world" }).ToList();
        HelperReply item = replies.First(r => r.Kind == HelperReplyKind.Item);
        int pid = item.Data!.Value.GetProperty("pid").GetInt32();
        Assert.NotEqual(Environment.ProcessId, pid);
        Assert.Equal(_helper.ProcessId, pid);
        string stat = File.ReadAllText($"/proc/{pid}/stat");
        string[] f = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        Assert.Equal(Environment.ProcessId.ToString(), f[1]);   // our child, started without Process
        Assert.Equal(pid.ToString(), f[2]);                      // leads its own process group: no terminal SIGINT
        Assert.Equal("world", item.Data.Value.GetProperty("args").GetProperty("hello").GetString());
        Assert.Null(replies.Last().Failure);

        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        var waited = _helper.Run("host.echo", new { wait = true }, cts.Token).ToList();
        Assert.Equal("Cancelled", waited.Last().Failure!.ErrorId);
        Assert.Equal("HelperUnknownCommand", _helper.Run("no.such", new { }).Last().Failure!.ErrorId);
    }

    [Fact]
    public void Helper_cancels_its_command_and_exits_on_SIGTERM()
    {
        HelperClient helper = HelperClient.Start();
        try
        {
            var replies = helper.Run("host.echo", new { wait = true }).GetEnumerator();
            Assert.True(replies.MoveNext()); // the item: the command is now waiting
            Interop.Libc.Kill(helper.ProcessId, 15);
            var rest = new List<HelperReply>();
            while (replies.MoveNext()) rest.Add(replies.Current);
            Assert.Equal("Cancelled", rest.Last().Failure!.ErrorId);
        }
        finally
        {
            helper.Dispose();
        }
        Assert.False(Directory.Exists($"/proc/{helper.ProcessId}"));
    }

    [Fact]
    public void Helper_exits_when_its_input_closes()
    {
        HelperClient helper = HelperClient.Start();
        int pid = helper.ProcessId;
        Assert.True(Directory.Exists($"/proc/{pid}"));
        helper.Dispose();
        Assert.False(Directory.Exists($"/proc/{pid}"));
    }
}
