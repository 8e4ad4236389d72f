using LeakTools.Core.ProcFs;
using LeakTools.Core.Symbols;

namespace LeakTools.Core.Tracing.Unwinding;

/// <summary>One executable mapping of a traced process and the CFI of its file.</summary>
public sealed class CodeMapping
{
    public required ulong Start { get; init; }
    public required ulong End { get; init; }
    public required string Path { get; init; }
    /// <summary>Runtime address minus file virtual address (from the ELF program headers).</summary>
    public required long Bias { get; init; }
    public required CallFrameInfo Cfi { get; init; }
}

/// <summary>The executable mappings of a traced process with each module's parsed CFI, found by
/// address. Modules are parsed once per file (path, size, mtime) for the whole helper process;
/// /proc/PID/maps is read again when code shows up outside every known mapping (a dlopen), at most
/// a few times a second.</summary>
public sealed class RemoteModules
{
    private static readonly Dictionary<(string, long, long), (CallFrameInfo Cfi, ElfSegment[] Loads)?> s_files = new();
    private readonly int _pid;
    private readonly ProcRoot _root;
    private CodeMapping[] _maps = Array.Empty<CodeMapping>();
    private ulong[] _starts = Array.Empty<ulong>();
    private long _lastRefresh;

    public RemoteModules(int pid, ProcRoot? root = null)
    {
        _pid = pid;
        _root = root ?? ProcRoot.Default;
        Refresh();
    }

    public IReadOnlyList<CodeMapping> Mappings => _maps;

    public void Refresh()
    {
        _lastRefresh = MonotonicClock.Now;
        string path = _root.File(_pid, "maps");
        int errno = ProcFile.TryRead(path, out ReadOnlySpan<byte> text);
        if (errno != 0) return;
        var list = new List<CodeMapping>();
        foreach (SmapsMapping mapping in SmapsParser.ParseMappings(text))
        {
            if (mapping.Permissions.Length < 3 || mapping.Permissions[2] != 'x') continue;
            string name = mapping.Path;
            if (name.Length == 0 || name[0] != '/') continue;
            ulong start = mapping.Start, end = mapping.End, offset = mapping.Offset;
            string open = name.EndsWith(" (deleted)", StringComparison.Ordinal) || !File.Exists(name)
                ? _root.File(_pid, $"map_files/{start:x}-{end:x}") : name;
            var file = Load(open);
            if (file is null) continue;
            long bias = 0;
            bool found = false;
            foreach (ElfSegment s in file.Value.Loads)
            {
                if (offset >= s.Offset && offset - s.Offset < Math.Max(s.FileSize, 1))
                {
                    bias = (long)start - (long)(s.VirtualAddress + (offset - s.Offset));
                    found = true;
                    break;
                }
            }
            if (!found) continue;
            list.Add(new CodeMapping { Start = start, End = end, Path = name, Bias = bias, Cfi = file.Value.Cfi });
        }
        list.Sort((a, b) => a.Start.CompareTo(b.Start));
        _maps = list.ToArray();
        _starts = _maps.Select(m => m.Start).ToArray();
    }

    private static (CallFrameInfo Cfi, ElfSegment[] Loads)? Load(string path)
    {
        FileInfo info;
        try { info = new FileInfo(path); if (!info.Exists) return null; }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return null; }
        var key = (path, info.Length, info.LastWriteTimeUtc.Ticks);
        lock (s_files)
        {
            if (s_files.TryGetValue(key, out var known)) return known;
        }
        (CallFrameInfo, ElfSegment[])? value = null;
        try
        {
            using ElfFile elf = ElfFile.Open(path);
            value = (CallFrameInfo.Read(elf), elf.Segments.Where(s => s.Type == ElfSegment.PT_LOAD).ToArray());
        }
        catch (LeakToolsException) { }
        lock (s_files) s_files[key] = value;
        return value;
    }

    /// <summary>The code mapping holding <paramref name="address"/>; re-reads the maps (rate
    /// limited) when none does.</summary>
    public CodeMapping? Find(ulong address)
    {
        CodeMapping? m = Lookup(address);
        if (m is null && MonotonicClock.Now - _lastRefresh > 200_000_000)
        {
            Refresh();
            m = Lookup(address);
        }
        return m;
    }

    private CodeMapping? Lookup(ulong address)
    {
        int lo = 0, hi = _starts.Length - 1, found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (_starts[mid] <= address) { found = mid; lo = mid + 1; }
            else hi = mid - 1;
        }
        return found >= 0 && address < _maps[found].End ? _maps[found] : null;
    }
}
