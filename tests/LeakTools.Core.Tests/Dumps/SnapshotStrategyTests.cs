using System.Globalization;
using System.Text;
using LeakTools.Core.Dumps;
using LeakTools.Core.Interop;
using LeakTools.Tests.Shared;
using Microsoft.Win32.SafeHandles;
using System.Text.RegularExpressions;
using Xunit;

namespace LeakTools.Core.Tests.Dumps;

/// <summary>Every snapshot strategy in this process, on a fixture started with posix_spawn (not
/// System.Diagnostics.Process, whose child reaping would swallow the ptrace stops).</summary>
public sealed unsafe class SnapshotStrategyTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("leaktools-strategy-").FullName;
    private readonly string _exe = FixtureBuilder.Build("core-threads.c", "-O0 -g", "lt-core-threads");
    private int _pid;
    private ulong _heap;

    public SnapshotStrategyTests()
    {
        var (read, write) = Spawn.Pipe();
        _pid = Spawn.Start(new[] { _exe, "24", "daemon" }, new Dictionary<int, int> { [1] = write });
        Libc.Close(write);
        using var reader = new StreamReader(new FileStream(new SafeFileHandle(read, true), FileAccess.Read, 1));
        string line = reader.ReadLine() ?? throw new InvalidOperationException("fixture did not start");
        string heap = line.Split(' ').First(p => p.StartsWith("heap=", StringComparison.Ordinal))[7..];
        _heap = ulong.Parse(heap, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
    }

    public void Dispose()
    {
        if (_pid > 0)
        {
            Libc.Kill(_pid, 9);
            int status;
            Ptrace.WaitPid(_pid, &status, 0);
        }
        Directory.Delete(_dir, recursive: true);
    }

    private void AssertGoodCore(CoreDump dump)
    {
        using CoreFile core = CoreFile.Open(dump.Path);
        Assert.Null(core.Problem);
        Assert.Equal(5, core.Threads.Count);
        byte[] magic = new byte[20];
        Assert.Equal(20, core.ReadMemory(_heap, magic));
        Assert.Equal("LEAKTOOLS-CORE-MAGIC", Encoding.ASCII.GetString(magic));
        if (LinuxFactAttribute.ToolExists("gdb") && (dump.Compression is null || LinuxFactAttribute.ToolExists("zstd")))
        {
            string plain = dump.Path;
            if (dump.Compression is not null)
            {
                plain = dump.Path + ".core";
                Tools.Run("zstd", "-q", "-d", "-o", plain, dump.Path); // gdb reads plain cores, as with systemd-coredump's
            }
            string bt = Tools.Run("gdb", "-batch", "-nx", "-ex", "thread apply all bt", _exe, plain);
            foreach (string fn in new[] { "park_alpha", "park_beta", "park_gamma" }) Assert.Contains(fn, bt);
        }
        Assert.Matches(@"TracerPid:\s+0\n", File.ReadAllText($"/proc/{_pid}/status"));
    }

    [LinuxTheory("gcc")]
    [InlineData(SnapshotStrategy.Mapped, false)]
    [InlineData(SnapshotStrategy.Buffered, false)]
    [InlineData(SnapshotStrategy.Buffered, true)]
    [InlineData(SnapshotStrategy.Direct, false)]
    [InlineData(SnapshotStrategy.Direct, true)]
    public void Every_strategy_writes_a_complete_core(SnapshotStrategy strategy, bool compress)
    {
        var verbose = new List<string>();
        CoreDump dump = new CoreSnapshotter(verbose: verbose.Add).Capture(_pid, new SnapshotOptions { Destination = _dir, Strategy = strategy, Compress = compress });
        Assert.Contains(verbose, v => v.Contains($"({strategy};"));
        AssertGoodCore(dump);
        using CoreFile header = CoreFile.ReadHeader(dump.Path);
        Assert.Equal(strategy.ToString(), header.LeakToolsInfo["strategy"]);
    }

    [LinuxFact("gcc", "readelf")]
    public void Mapped_core_whose_notes_outgrow_the_reserved_front_puts_them_at_the_end()
    {
        CoreDump dump = new CoreSnapshotter().Capture(_pid, new SnapshotOptions { Destination = _dir, Strategy = SnapshotStrategy.Mapped, HeaderReserve = 4096 });
        AssertGoodCore(dump);
        string headers = Tools.Run("readelf", "-h", dump.Path);
        Match m = Regex.Match(headers, @"Start of program headers:\s+(\d+)");
        Assert.True(long.Parse(m.Groups[1].Value) > 1 << 20, headers);
        Assert.Equal(5, Regex.Matches(Tools.Run("readelf", "-n", dump.Path), "NT_PRSTATUS").Count);
    }

    [LinuxFact("gcc")]
    public void Target_killed_while_stopped_leaves_no_file_and_says_it_exited()
    {
        var ex = Assert.Throws<ProcessExitedException>(() => new CoreSnapshotter().Capture(_pid, new SnapshotOptions
        {
            Destination = _dir,
            WhileStopped = pid => Libc.Kill(pid, 9),
        }));
        Assert.Equal(_pid, ex.ProcessId);
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }
}
