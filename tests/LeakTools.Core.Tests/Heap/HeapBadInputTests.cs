using LeakTools.Core.Heap;
using LeakTools.Core.Hosting;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Core.Tests.Heap;

/// <summary>A fact that needs the Linux tools named and a library file (e.g. jemalloc).</summary>
public sealed class LibraryFactAttribute : FactAttribute
{
    public LibraryFactAttribute(string library, params string[] tools) =>
        Skip = LinuxFactAttribute.SkipReason(tools) ?? (File.Exists(library) ? null : $"{library} is not installed");
}

/// <summary>Cores Find-LeakedAllocation must refuse with a clear, typed error rather than guess:
/// not a core, cut short, without the heap (coredump_filter), another allocator (jemalloc, an
/// executable's own malloc, musl, static glibc), a glibc release it does not know, a libc that is
/// gone from the disk. Each is a real process snapshotted through the helper host.</summary>
public sealed class HeapBadInputTests : IDisposable
{
    private const string Jemalloc = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2";
    private readonly string _dir = Directory.CreateTempSubdirectory("leaktools-heapbad-").FullName;
    private readonly HelperClient _helper = HelperClient.Start();

    public void Dispose()
    {
        _helper.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private string Snapshot(int pid) => HeapLeaksRun.TakeSnapshot(_helper, new SnapshotRequest { Pid = pid, Destination = _dir });

    private static string Plain(string flags = "-O0 -g", string compiler = "gcc", string name = "lt-heap-plain") =>
        FixtureBuilder.Build("heap-plain.c", flags, name, compiler);

    private static LeakToolsException Refused(string core)
    {
        var ex = Assert.Throws<LeakToolsException>(() => CoreHeapAnalysis.Open(core).Dispose());
        Assert.NotNull(ex.Target);
        return ex;
    }

    private string SnapshotOf(string exe, string[]? wrapper = null)
    {
        using FixtureProcess f = FixtureProcess.StartWith(exe, wrapper);
        return Snapshot(f.Pid);
    }

    [LinuxFact("gcc")]
    public void A_plain_program_leaks_its_one_block()
    {
        using FixtureProcess f = FixtureProcess.Start(Plain());
        using CoreHeapAnalysis a = CoreHeapAnalysis.Open(Snapshot(f.Pid));
        LeakedAllocation leak = Assert.Single(a.FindLeaks());
        Assert.Equal(f.Hex("leak"), leak.Address);
        Assert.Equal(104, leak.Size);
        Assert.EndsWith("|leaked..........|", leak.Preview);
    }

    [LinuxFact("gcc")]
    public void Files_that_are_not_cores_are_refused()
    {
        string text = Path.Combine(_dir, "notes.txt");
        File.WriteAllText(text, "not a core\n");
        Assert.Equal("NotACore", Refused(text).ErrorId);
        Assert.Equal("NotACore", Refused(Plain()).ErrorId); // an ELF executable
        Assert.Equal("CoreNotFound", Refused(Path.Combine(_dir, "missing")).ErrorId);
    }

    [LinuxFact("gcc")]
    public void A_truncated_core_is_refused_when_the_heap_is_cut_off()
    {
        byte[] core = File.ReadAllBytes(SnapshotOf(Plain()));
        foreach (int keep in new[] { core.Length / 2, 1000 })
        {
            string cut = Path.Combine(_dir, $"cut-{keep}");
            File.WriteAllBytes(cut, core[..keep]);
            LeakToolsException ex = Refused(cut);
            Assert.Equal("HeapNotInCore", ex.ErrorId);
            Assert.Equal(FailureKind.InvalidData, ex.Kind);
            Assert.Contains("truncated", ex.Message);
        }
    }

    [LinuxFact("gcc")]
    public void A_core_of_another_architecture_is_refused()
    {
        byte[] core = File.ReadAllBytes(SnapshotOf(Plain()));
        BitConverter.GetBytes((ushort)183).CopyTo(core, 18); // e_machine: EM_AARCH64
        string arm = Path.Combine(_dir, "core.aarch64");
        File.WriteAllBytes(arm, core);
        LeakToolsException ex = Refused(arm);
        Assert.Equal("UnsupportedCore", ex.ErrorId);
        Assert.Contains("x86-64", ex.Message);
    }

    [LinuxFact("gcc")]
    public void A_core_without_anonymous_memory_is_refused()
    {
        using FixtureProcess f = FixtureProcess.Start(Plain());
        File.WriteAllText($"/proc/{f.Pid}/coredump_filter", "0x10"); // ELF headers only: no heap, no libc data
        LeakToolsException ex = Refused(Snapshot(f.Pid));
        Assert.Equal("HeapNotInCore", ex.ErrorId);
        Assert.Contains("coredump_filter (0x10)", ex.Message);
    }

    [LibraryFact(Jemalloc, "gcc", "env")]
    public void Jemalloc_is_named_not_guessed_at()
    {
        LeakToolsException ex = Refused(SnapshotOf(Plain(), new[] { "env", "LD_PRELOAD=" + Jemalloc }));
        Assert.Equal("UnsupportedAllocator", ex.ErrorId);
        Assert.Equal(FailureKind.NotSupported, ex.Kind);
        Assert.Contains("jemalloc", ex.Message);
    }

    [LinuxFact("gcc")]
    public void An_executable_with_its_own_malloc_is_refused()
    {
        LeakToolsException ex = Refused(SnapshotOf(Plain("-O0 -g -DOWN_MALLOC", name: "lt-heap-own")));
        Assert.Equal("UnsupportedAllocator", ex.ErrorId);
        Assert.Contains("executable's own malloc", ex.Message);
    }

    [LinuxFact("musl-gcc")]
    public void Musl_is_named_not_guessed_at()
    {
        LeakToolsException ex = Refused(SnapshotOf(Plain(compiler: "musl-gcc", name: "lt-heap-musl")));
        Assert.Equal("NotGlibc", ex.ErrorId);
        Assert.Contains("musl", ex.Message);
    }

    [LinuxFact("gcc")]
    public void A_statically_linked_program_is_refused()
    {
        LeakToolsException ex = Refused(SnapshotOf(Plain("-O0 -g -static", name: "lt-heap-static")));
        Assert.Equal("NotGlibc", ex.ErrorId);
        Assert.Contains("statically linked", ex.Message);
    }

    [LinuxFact("gcc", "env")]
    public void An_unknown_glibc_release_and_a_libc_gone_from_disk_are_refused()
    {
        // The machine's libc with its release banner changed to 2.99, loaded through LD_LIBRARY_PATH.
        string lib = Path.Combine(_dir, "lib");
        Directory.CreateDirectory(lib);
        byte[] libc = File.ReadAllBytes("/lib/x86_64-linux-gnu/libc.so.6");
        int at = libc.AsSpan().IndexOf("release version 2."u8);
        Assert.True(at > 0);
        int digits = at + "release version 2.".Length;
        int end = Array.IndexOf(libc, (byte)'.', digits);
        for (int i = digits; i < end; i++) libc[i] = (byte)'9';
        string copy = Path.Combine(lib, "libc.so.6");
        File.WriteAllBytes(copy, libc);
        File.SetUnixFileMode(copy, (UnixFileMode)0x1ED);

        string core = SnapshotOf(Plain(), new[] { "env", "LD_LIBRARY_PATH=" + lib });
        LeakToolsException ex = Refused(core);
        Assert.Equal("UnsupportedLibcVersion", ex.ErrorId);
        Assert.Equal(FailureKind.NotSupported, ex.Kind);
        Assert.Matches(@"glibc 2\.99+ ", ex.Message);
        Assert.Contains("2.28 to 2.40", ex.Message);

        File.Delete(copy);
        ex = Refused(core);
        Assert.Equal("LibcUnreadable", ex.ErrorId);
        Assert.Equal(FailureKind.NotFound, ex.Kind);
        Assert.Contains(copy, ex.Message);
    }
}
