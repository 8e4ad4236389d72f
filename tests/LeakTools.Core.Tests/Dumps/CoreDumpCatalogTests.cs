using LeakTools.Core.Dumps;
using LeakTools.Core.Interop;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Core.Tests.Dumps;

public sealed class CoreDumpCatalogTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("leaktools-catalog-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    /// <summary>An abrt problem directory laid out as abrt-hook-ccpp + abrt-action-save-package-data leave it.</summary>
    private string AbrtDir(string spool, string name, int pid, long time, string exe, string package)
    {
        string dir = Path.Combine(spool, name);
        Directory.CreateDirectory(dir);
        void F(string file, string text) => File.WriteAllText(Path.Combine(dir, file), text);
        F("analyzer", "CCpp");
        F("type", "CCpp");
        F("executable", exe);
        F("pid", pid.ToString());
        F("global_pid", pid.ToString());
        F("uid", "0");
        F("time", time.ToString());
        F("last_occurrence", time.ToString());
        F("count", "1");
        F("reason", $"{Path.GetFileName(exe)} killed by SIGABRT");
        F("cmdline", $"{exe} -f");
        F("package", package);
        F("pkg_name", package.Split('-')[0]);
        F("component", package.Split('-')[0]);
        F("hostname", "db01.example.com");
        F("kernel", "3.10.0-1160.el7.x86_64");
        F("abrt_version", "2.1.11");
        File.WriteAllBytes(Path.Combine(dir, "coredump"), SyntheticCore.Build(pid, Path.GetFileName(exe), $"{exe} -f", 6));
        return dir;
    }

    [Fact]
    public void Lists_abrt_problem_directories_with_the_fields_abrt_cli_shows()
    {
        string spool = Path.Combine(_root, "abrt");
        AbrtDir(spool, "ccpp-2024-05-01-10:22:33-4242", 4242, 1714558953, "/sbin/amsHelper", "ams-11.8.0-1.el7");
        AbrtDir(spool, "ccpp-2024-05-02-11:00:00.123456-5151", 5151, 1714647600, "/sbin/amsHelper", "ams-11.8.0-1.el7");
        Directory.CreateDirectory(Path.Combine(spool, "ccpp-2024-05-03-12:00:00-6161.new")); // still being written
        Directory.CreateDirectory(Path.Combine(spool, "oops-2024-05-03-12:00:00-1"));       // no core: not listed

        var dumps = new CoreDumpCatalog().ListAbrt(spool).ToList();
        Assert.Equal(2, dumps.Count);
        CoreDump d = dumps[0];
        Assert.Equal(CoreDumpSource.Abrt, d.Source);
        Assert.Equal(4242, d.Id);
        Assert.Equal("amsHelper", d.Name);
        Assert.Equal("/sbin/amsHelper", d.Executable);
        Assert.Equal("/sbin/amsHelper -f", d.CommandLine);
        Assert.Equal("ams-11.8.0-1.el7", d.Package);
        Assert.Equal("amsHelper killed by SIGABRT", d.Reason);
        Assert.Equal(6, d.Signal);
        Assert.Equal(0u, d.Uid);
        Assert.Equal(DateTimeOffset.FromUnixTimeSeconds(1714558953).LocalDateTime, d.Time);
        Assert.EndsWith("ccpp-2024-05-01-10:22:33-4242/coredump", d.Path);
        Assert.Equal(1, d.Threads);
        Assert.Null(d.Problem);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("zstd")]
    [InlineData("xz")]
    [InlineData("lz4")]
    public void Lists_systemd_coredump_files_and_reads_their_notes_through_compression(string? tool)
    {
        if (tool is not null && !LinuxFactAttribute.ToolExists(tool)) return;
        string dir = Path.Combine(_root, "coredump");
        Directory.CreateDirectory(dir);
        // comm "ams.helper" holds a dot; systemd escapes odd characters as \x..
        string name = "core.ams.helper.1000.0123456789abcdef0123456789abcdef.4242.1714558953123456";
        string path = Path.Combine(dir, name);
        File.WriteAllBytes(path, SyntheticCore.Build(4242, "ams.helper", "/opt/ams/ams.helper --daemon", 11, 1000));
        if (tool is not null) SyntheticCore.Compress(path, tool);
        File.WriteAllText(Path.Combine(dir, ".#core.other.0.0123456789abcdef0123456789abcdef.99.1714558953123456"), "partial");

        CoreDump d = Assert.Single(new CoreDumpCatalog().ListSystemd(dir));
        Assert.Equal(CoreDumpSource.SystemdCoredump, d.Source);
        Assert.Equal("ams.helper", d.Name);
        Assert.Equal(4242, d.Id);
        Assert.Equal(1000u, d.Uid);
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(1714558953123).LocalDateTime, d.Time);
        Assert.Equal(tool, d.Compression);
        Assert.Equal("/opt/ams/ams.helper --daemon", d.CommandLine); // from NT_PRPSINFO inside the (compressed) core
        Assert.Equal(11, d.Signal);
        Assert.Null(d.Problem);
    }

    [Fact]
    public void Systemd_xattrs_win_over_the_file_name()
    {
        string dir = Path.Combine(_root, "xattr");
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, "core.amsHelper.0.0123456789abcdef0123456789abcdef.4242.1714558953123456");
        File.WriteAllBytes(path, SyntheticCore.Build(4242, "amsHelper", "/sbin/amsHelper", 6));
        if (!LibcFiles.WriteXattr(path, "user.coredump.exe", "/sbin/amsHelper")) return; // filesystem without user xattrs
        LibcFiles.WriteXattr(path, "user.coredump.signal", "6");
        CoreDump d = Assert.Single(new CoreDumpCatalog().ListSystemd(dir));
        Assert.Equal("/sbin/amsHelper", d.Executable);
        Assert.Equal(6, d.Signal);
    }

    [Fact]
    public void Plain_cores_are_described_from_their_notes_and_broken_ones_listed_with_a_warning()
    {
        string dir = Path.Combine(_root, "plain");
        Directory.CreateDirectory(dir);
        byte[] good = SyntheticCore.Build(777, "leaky-daemon", "./leaky-daemon 200 2", 6);
        File.WriteAllBytes(Path.Combine(dir, "core.777"), good);
        File.WriteAllBytes(Path.Combine(dir, "core"), good[..(good.Length - 2048)]);     // truncated in its PT_LOAD
        byte[] corrupt = (byte[])good.Clone();
        Array.Fill<byte>(corrupt, 0xff, (int)ElfCore.NotesOffset(1), 8);                   // first note header garbage
        File.WriteAllBytes(Path.Combine(dir, "core.888"), corrupt);
        File.WriteAllText(Path.Combine(dir, "core.txt"), "not a core, just a file named like one");
        File.WriteAllText(Path.Combine(dir, "README"), "unrelated");

        var warnings = new List<string>();
        var dumps = new CoreDumpCatalog(warnings.Add).ListFiles(dir).ToDictionary(d => Path.GetFileName(d.Path));
        Assert.Equal(new[] { "core", "core.777", "core.888" }, dumps.Keys.Order());

        CoreDump ok = dumps["core.777"];
        Assert.Equal((777, "leaky-daemon", "./leaky-daemon 200 2", 6, "/usr/sbin/leaky-daemon", CoreDumpSource.File),
            (ok.Id!.Value, ok.Name, ok.CommandLine, ok.Signal!.Value, ok.Executable, ok.Source));
        Assert.Null(ok.Problem);

        CoreDump cut = dumps["core"];
        Assert.Equal(777, cut.Id);                    // what could be read is there
        Assert.Contains("truncated", cut.Problem);
        Assert.Contains(warnings, w => w.Contains("core:") && w.Contains("truncated"));

        Assert.NotNull(dumps["core.888"].Problem);
        Assert.Contains(warnings, w => w.Contains("core.888"));
    }

    [Fact]
    public void Reader_reads_memory_by_address_and_stops_at_gaps()
    {
        string path = Path.Combine(_root, "core.1");
        File.WriteAllBytes(path, SyntheticCore.Build(1, "x", "x", 6));
        using CoreFile core = CoreFile.Open(path);
        byte[] buf = new byte[16];
        Assert.Equal(16, core.ReadMemory(SyntheticCore.DataAddress + 0x10, buf));
        Assert.Equal((byte)(0x10 * 7), buf[0]);
        Assert.Equal(8, core.ReadMemory(SyntheticCore.DataAddress + 0x1000 - 8, buf)); // memsz beyond filesz: not in the core
        Assert.Equal(0, core.ReadMemory(0x1000, buf));
        Assert.NotNull(core.FindSegment(SyntheticCore.DataAddress + 0x1800));
        Assert.Equal("/usr/sbin/x", core.Executable);
    }
}
