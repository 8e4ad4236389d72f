namespace LeakTools.Core.Symbols;

/// <summary>The one place modules are opened: keeps a <see cref="ModuleSymbolizer"/> per module
/// identity (path, size and modification time; modules read through another path with the same
/// build-id and size share one), so tracers, core scanners and cmdlets symbolize thousands of
/// stacks against parsed, cached modules. Thread-safe.</summary>
public sealed class SymbolCache : IDisposable
{
    private readonly Dictionary<(string Path, long Size, long MTime), ModuleSymbolizer> _byFile = new();
    private readonly Dictionary<(string BuildId, long Size), ModuleSymbolizer> _byBuildId = new();
    private readonly List<string> _warnings = new();
    private readonly object _lock = new();
    private readonly DebuginfodClient? _debuginfod;
    private static readonly object s_sharedLock = new();
    private static SymbolCache? s_shared;
    private static string? s_sharedEnvironment;

    public SymbolCache(SymbolizerOptions? options = null)
    {
        Options = options ?? SymbolizerOptions.FromEnvironment();
        if (Options.DebuginfodUrls.Count > 0) _debuginfod = new DebuginfodClient(Options, AddWarning);
    }

    /// <summary>A process-wide cache with options from the environment (what the cmdlets use); a
    /// new one is made when DEBUGINFOD_URLS, DEBUGINFOD_CACHE_PATH or DEBUGINFOD_TIMEOUT change.</summary>
    public static SymbolCache Shared
    {
        get
        {
            string environment = string.Join("\n", new[] { "DEBUGINFOD_URLS", "DEBUGINFOD_CACHE_PATH", "DEBUGINFOD_TIMEOUT" }.Select(Environment.GetEnvironmentVariable));
            lock (s_sharedLock)
            {
                if (s_shared is null || s_sharedEnvironment != environment)
                {
                    // The previous cache is left to whoever still holds it (its files stay mapped).
                    s_shared = new SymbolCache(SymbolizerOptions.FromEnvironment());
                    s_sharedEnvironment = environment;
                }
                return s_shared;
            }
        }
    }

    public SymbolizerOptions Options { get; }

    /// <summary>Raised for problems worth telling the user once (an unreachable debuginfod server).</summary>
    public event Action<string>? Warning;

    /// <summary>Warnings raised so far, and clears them.</summary>
    public List<string> TakeWarnings()
    {
        lock (_warnings)
        {
            var copy = new List<string>(_warnings);
            _warnings.Clear();
            return copy;
        }
    }

    private void AddWarning(string message)
    {
        lock (_warnings) _warnings.Add(message);
        Warning?.Invoke(message);
    }

    public int ModuleCount
    {
        get
        {
            lock (_lock) return _byFile.Count;
        }
    }

    /// <summary>The symbolizer of the ELF file at <paramref name="path"/>. <paramref name="displayPath"/>
    /// is the module's real name when it is read through another path (/proc/PID/map_files for a
    /// deleted file). Throws <see cref="LeakToolsException"/> (FileNotFound, NotAnElfFile,
    /// UnsupportedElf, CorruptElf, AccessDenied).</summary>
    public ModuleSymbolizer GetModule(string path, string? displayPath = null)
    {
        string shown = displayPath ?? path;
        FileInfo info;
        try
        {
            info = new FileInfo(path);
            if (!info.Exists) throw new LeakToolsException(FailureKind.NotFound, "FileNotFound", $"Cannot find the file '{shown}'.", shown);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new LeakToolsException(FailureKind.NotFound, "FileNotFound", $"Cannot read '{shown}': {ex.Message}", shown, ex);
        }
        var key = (Path.GetFullPath(path), info.Length, info.LastWriteTimeUtc.Ticks);
        lock (_lock)
        {
            if (_byFile.TryGetValue(key, out ModuleSymbolizer? known)) return known;
        }

        ElfFile file = ElfFile.Open(path, shown);
        lock (_lock)
        {
            if (_byFile.TryGetValue(key, out ModuleSymbolizer? raced))
            {
                file.Dispose();
                return raced;
            }
            if (file.BuildId is not null && _byBuildId.TryGetValue((file.BuildId, file.Length), out ModuleSymbolizer? same) && same.Path == shown)
            {
                file.Dispose();
                _byFile[key] = same;
                return same;
            }
        }
        ModuleSymbolizer module = Create(file, shown);
        lock (_lock)
        {
            _byFile[key] = module;
            if (file.BuildId is not null) _byBuildId.TryAdd((file.BuildId, file.Length), module);
        }
        return module;
    }

    /// <summary>The symbolizer of an ELF image held in memory (the vdso read from a process),
    /// shared by every image with the same build-id and size.</summary>
    public ModuleSymbolizer GetModule(byte[] image, string name)
    {
        ElfFile file = ElfFile.FromBytes(image, name);
        lock (_lock)
        {
            if (file.BuildId is not null && _byBuildId.TryGetValue((file.BuildId, file.Length), out ModuleSymbolizer? same))
            {
                file.Dispose();
                return same;
            }
        }
        ModuleSymbolizer module = Create(file, name);
        lock (_lock)
        {
            if (file.BuildId is not null) _byBuildId.TryAdd((file.BuildId, file.Length), module);
        }
        return module;
    }

    private ModuleSymbolizer Create(ElfFile file, string shown)
    {
        ElfFile? debug = null;
        DebugInfoSource source = DebugInfoSource.None;
        ElfFile? mini = null;
        try
        {
            if (file.HasDwarf)
            {
                source = DebugInfoSource.Embedded;
            }
            else
            {
                string original = shown.EndsWith(" (deleted)", StringComparison.Ordinal) ? shown[..^10] : shown;
                debug = original.StartsWith('/') ? DebugFileLocator.Find(file, original, Options, _debuginfod, out source) : null;
            }
            if (debug is null || !debug.HasDwarf) mini = DebugFileLocator.OpenMiniDebugInfo(file);
            return new ModuleSymbolizer(file, shown, debug, source, mini);
        }
        catch (BadFormatException ex)
        {
            file.Dispose();
            debug?.Dispose();
            mini?.Dispose();
            throw new LeakToolsException(FailureKind.InvalidData, "CorruptElf", $"'{shown}' is a corrupt or truncated ELF file: {ex.Message}.", shown);
        }
        catch
        {
            file.Dispose();
            debug?.Dispose();
            mini?.Dispose();
            throw;
        }
    }

    /// <summary>Resolves a file virtual address of the module at <paramref name="modulePath"/>
    /// (a core's NT_FILE entry, a valgrind frame, addr2line -e).</summary>
    public SymbolizedAddress Resolve(string modulePath, ulong fileAddress) => GetModule(modulePath).Resolve(fileAddress);

    /// <summary>Forgets every module (their files are unmapped).</summary>
    public void Clear()
    {
        lock (_lock)
        {
            foreach (ModuleSymbolizer m in _byFile.Values.Concat(_byBuildId.Values).Distinct()) m.Dispose();
            _byFile.Clear();
            _byBuildId.Clear();
        }
    }

    public void Dispose() => Clear();
}
