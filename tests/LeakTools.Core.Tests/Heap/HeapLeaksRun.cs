using System.Globalization;
using System.Text.Json;
using LeakTools.Core.Hosting;
using LeakTools.Tests.Shared;

namespace LeakTools.Core.Tests.Heap;

/// <summary>One line of tests/fixtures/heap-leaks.cpp's manifest.</summary>
public sealed record ManifestEntry(string What, ulong Address, long Requested, long Usable, string Arena, string Kind, string? Type);

/// <summary>What heap-leaks did: every block it leaked, kept and freed.</summary>
public sealed class HeapManifest
{
    public List<ManifestEntry> Entries { get; } = new();

    public IEnumerable<ManifestEntry> Leaks => Entries.Where(e => e.What == "LEAK");

    public IEnumerable<ManifestEntry> Kept => Entries.Where(e => e.What == "KEEP");

    public IEnumerable<ManifestEntry> Freed => Entries.Where(e => e.What == "FREE");

    public static HeapManifest Read(string path)
    {
        var m = new HeapManifest();
        foreach (string line in File.ReadAllLines(path))
        {
            string[] f = line.Split(' ');
            ulong address = ulong.Parse(f[1].AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            long requested = long.Parse(f[2], CultureInfo.InvariantCulture);
            m.Entries.Add(f[0] switch
            {
                "LEAK" => new ManifestEntry("LEAK", address, requested, long.Parse(f[3], CultureInfo.InvariantCulture), f[4], f[5], f.Length > 6 ? f[6] : null),
                "KEEP" => new ManifestEntry("KEEP", address, requested, long.Parse(f[3], CultureInfo.InvariantCulture), "", f[4], null),
                _ => new ManifestEntry("FREE", address, requested, 0, "", "", null),
            });
        }
        return m;
    }
}

/// <summary>Runs heap-leaks once for a test class and takes every kind of core of it: a LeakTools
/// snapshot (through the helper host), gcore's, and last the kernel's (SIGABRT; only where
/// core_pattern is the plain "core" this machine has — it is never changed).</summary>
public sealed class HeapLeaksRun : IDisposable
{
    public HeapLeaksRun()
    {
        Dir = Directory.CreateTempSubdirectory("leaktools-heap-").FullName;
        Exe = Build();
        bool kernel = KernelCoreReason is null;
        string manifest = Path.Combine(Dir, "manifest.txt");
        using FixtureProcess f = FixtureProcess.StartWith(Exe, kernel ? new[] { "prlimit", "--core=unlimited:unlimited" } : null, manifest);
        Pid = f.Pid;
        Manifest = HeapManifest.Read(manifest);
        using (HelperClient helper = HelperClient.Start())
        {
            Snapshot = TakeSnapshot(helper, new SnapshotRequest { Pid = f.Pid, Destination = Dir });
            CompressedSnapshot = TakeSnapshot(helper, new SnapshotRequest { Pid = f.Pid, Destination = Dir, Compress = true, FileName = "core.zst" });
        }
        if (LinuxFactAttribute.ToolExists("gcore"))
        {
            Tools.Run("gcore", "-o", Path.Combine(Dir, "gcore"), f.Pid.ToString(CultureInfo.InvariantCulture));
            Gcore = Path.Combine(Dir, $"gcore.{f.Pid}");
        }
        if (kernel)
        {
            Signals.Send(f.Pid, 6);
            for (int i = 0; i < 400 && StillRunning(f.Pid); i++) Thread.Sleep(50);
            KernelCore = Path.Combine(Dir, "core");
        }
    }

    /// <summary>True until the process is a zombie or gone (the runtime may reap it between two reads).</summary>
    private static bool StillRunning(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/stat").Split(") ")[1][0] != 'Z';
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>A snapshot through the helper host; a failure comes back as its LeakToolsException.</summary>
    internal static string TakeSnapshot(HelperClient helper, SnapshotRequest request)
    {
        string? path = null;
        foreach (HelperReply r in helper.Run("core.snapshot", request))
        {
            if (r.Kind == HelperReplyKind.Item) path = r.Data!.Value.Deserialize<CoreDump>(HelperJson.Options)!.Path;
            if (r.Kind == HelperReplyKind.Done && r.Failure is not null) throw r.Failure.ToException();
        }
        return path!;
    }

    /// <summary>Why there can be no kernel core here, or null.</summary>
    public static string? KernelCoreReason
    {
        get
        {
            string pattern = File.Exists("/proc/sys/kernel/core_pattern") ? File.ReadAllText("/proc/sys/kernel/core_pattern").Trim() : "";
            string usesPid = File.Exists("/proc/sys/kernel/core_uses_pid") ? File.ReadAllText("/proc/sys/kernel/core_uses_pid").Trim() : "";
            if (pattern != "core" || usesPid != "0") return $"core_pattern is '{pattern}' (uses_pid {usesPid}), not the plain 'core' the kernel-core test needs";
            return LinuxFactAttribute.ToolExists("prlimit") ? null : "prlimit is not installed";
        }
    }

    public static string Build() => HeapFixtures.HeapLeaks();

    public string Dir { get; }
    public string Exe { get; }
    public int Pid { get; }
    public HeapManifest Manifest { get; }
    public string Snapshot { get; } = "";
    /// <summary>A zstd-compressed snapshot, as systemd-coredump stores cores.</summary>
    public string CompressedSnapshot { get; } = "";
    public string? Gcore { get; }
    public string? KernelCore { get; }

    public void Dispose() => Directory.Delete(Dir, recursive: true);
}
