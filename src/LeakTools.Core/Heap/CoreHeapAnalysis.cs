using System.Diagnostics;
using LeakTools.Core.Dumps;
using LeakTools.Core.Symbols;
using LeakTools.Core.Tracing;

namespace LeakTools.Core.Heap;

/// <summary>Where leaked blocks were allocated: a table an allocation tracer kept in the process,
/// read back from the same core. Find-LeakedAllocation reads the in-process agent's live table
/// (Watch-Allocation -Engine Agent) by itself when the core holds one; this interface lets a
/// caller supply another.</summary>
public interface IAllocationSiteSource
{
    /// <summary>The call stack (innermost first) of the allocation that returned
    /// <paramref name="blockAddress"/>, a block of <paramref name="usableSize"/> usable bytes, or
    /// null when the table does not know the block.</summary>
    IReadOnlyList<StackFrame>? Find(ulong blockAddress, long usableSize);
}

public sealed class HeapAnalysisOptions
{
    /// <summary>The executable to read symbols from instead of the path the core names.</summary>
    public string? ExecutablePath { get; init; }

    /// <summary>Symbol cache (libc's debug symbols, vtables); default <see cref="SymbolCache.Shared"/>.</summary>
    public SymbolCache? Symbols { get; init; }

    /// <summary>Where blocks were allocated; default: the in-process agent's live table when the core holds one.</summary>
    public IAllocationSiteSource? AllocationSites { get; init; }

    /// <summary>What the output's Core property says (null when the core will be removed); default the path read.</summary>
    public string? CoreLabel { get; init; }

    /// <summary>True when <see cref="CoreLabel"/> was given (null included).</summary>
    public bool HasCoreLabel { get; init; }
}

/// <summary>Figures of one analysis, for -Verbose and the benchmark.</summary>
public sealed class HeapScanStatistics
{
    public int Arenas { get; set; }
    public int Chunks { get; set; }
    public int Blocks { get; set; }
    public int MmappedBlocks { get; set; }
    public long HeapBytes { get; set; }
    public long RootBytes { get; set; }
    public long ScannedBlockBytes { get; set; }
    public int Leaked { get; set; }
    public TimeSpan OpenTime { get; set; }
    public TimeSpan WalkTime { get; set; }
    public TimeSpan ScanTime { get; set; }
    public string LibcSymbols { get; set; } = "";
    /// <summary>Where allocation sites came from, or why there are none (null: no tracer in the core).</summary>
    public string? AllocationSites { get; set; }
    /// <summary>Leaked blocks given an allocation site.</summary>
    public int LeaksWithSites { get; set; }
}

/// <summary>A core's glibc heap, read once: <see cref="Summarize"/> gives Get-HeapSummary's rows,
/// <see cref="FindLeaks"/> Find-LeakedAllocation's blocks. Problems that do not stop the analysis
/// (a list that breaks, mmapped chunks mp_ does not confirm, roots missing from the core) collect
/// in <see cref="Warnings"/>.</summary>
public sealed class CoreHeapAnalysis : IDisposable
{
    private readonly CoreFile _core;
    private readonly CoreMemory _memory;
    private readonly GlibcModule _libc;
    private readonly GlibcHeap _heap;
    private readonly HeapAnalysisOptions _options;
    private readonly string? _coreLabel;

    private CoreHeapAnalysis(CoreFile core, CoreMemory memory, GlibcModule libc, GlibcHeap heap, HeapAnalysisOptions options, List<string> warnings)
    {
        _core = core;
        _memory = memory;
        _libc = libc;
        _heap = heap;
        _options = options;
        Warnings = warnings;
        _coreLabel = options.HasCoreLabel ? options.CoreLabel : core.Path;
    }

    public List<string> Warnings { get; }

    public HeapScanStatistics Statistics { get; } = new();

    /// <summary>glibc's release ("2.36").</summary>
    public string LibcVersion => _libc.Layout.Version;

    public string LibcPath => _libc.Path;

    public int? ProcessId => _core.Process?.Pid;

    /// <summary>Opens <paramref name="corePath"/> and reads its heap. Throws <see cref="LeakToolsException"/>
    /// (CoreNotFound, NotACore, UnsupportedCore, HeapNotInCore, NotGlibc, UnsupportedAllocator,
    /// LibcUnreadable, LibcMismatch, UnsupportedLibcVersion, ArenaNotFound...).</summary>
    public static CoreHeapAnalysis Open(string corePath, HeapAnalysisOptions? options = null, CancellationToken cancel = default)
    {
        options ??= new HeapAnalysisOptions();
        var warnings = new List<string>();
        var time = Stopwatch.StartNew();
        CoreFile core = CoreFile.Open(corePath);
        CoreMemory? memory = null;
        try
        {
            if (core.Machine != ElfCore.EM_X86_64)
                throw new LeakToolsException(FailureKind.NotSupported, "UnsupportedCore", $"{corePath} is a core of another architecture (e_machine {core.Machine}): Find-LeakedAllocation reads x86-64 cores.", corePath);
            if (core.Truncated) warnings.Add($"The core is {core.Problem}.");
            if (core.Segments.Count == 0)
                throw new LeakToolsException(FailureKind.InvalidData, "HeapNotInCore", core.Truncated ? $"{corePath} is {core.Problem}: it holds no memory." : $"{corePath} holds no memory at all.", corePath);
            memory = new CoreMemory(core);
            SymbolCache symbols = options.Symbols ?? SymbolCache.Shared;
            GlibcModule libc = GlibcModule.Locate(memory, symbols, options.ExecutablePath, warnings);
            TimeSpan opened = time.Elapsed;
            GlibcHeap heap = GlibcHeap.Read(memory, libc, warnings, cancel);
            var analysis = new CoreHeapAnalysis(core, memory, libc, heap, options, warnings);
            analysis.Statistics.OpenTime = opened;
            analysis.Statistics.WalkTime = time.Elapsed - opened;
            analysis.Statistics.Arenas = heap.Arenas.Count;
            analysis.Statistics.Chunks = heap.Chunks.Count;
            analysis.Statistics.MmappedBlocks = heap.Mmapped.Count;
            analysis.Statistics.HeapBytes = heap.Arenas.Sum(a => a.SystemMem) + heap.Mmapped.Sum(m => m.MappingBytes);
            analysis.Statistics.LibcSymbols = libc.SymbolSource;
            foreach (string w in symbols.TakeWarnings()) warnings.Add(w);
            return analysis;
        }
        catch
        {
            memory?.Dispose();
            core.Dispose();
            throw;
        }
    }

    private string ArenaName(int index) => index < 0 ? "mmapped" : _heap.Arenas[index].IsMain ? "main" : $"0x{_heap.Arenas[index].Address:x}";

    /// <summary>One row per arena, then one for the mmapped chunks.</summary>
    public List<HeapSummary> Summarize()
    {
        var rows = _heap.Arenas.Select(a => new HeapSummary
        {
            ProcessId = ProcessId,
            Arena = ArenaName(a.Index),
            Kind = a.IsMain ? HeapArenaKind.Main : HeapArenaKind.Thread,
            Heaps = a.Heaps,
            HeapBytes = a.SystemMem,
            Threads = a.AttachedThreads,
            TopBytes = a.TopSize,
            Complete = a.Complete,
            LibcVersion = LibcVersion,
            Core = _coreLabel,
        }).ToList();
        ChunkTable c = _heap.Chunks;
        for (int i = 0; i < c.Count; i++)
        {
            HeapSummary r = rows[c.Arena(i)];
            long size = c.Size(i);
            switch (c.Kind(i))
            {
                case ChunkKind.Used:
                case ChunkKind.Uncertain:
                    r.UsedChunks++;
                    r.UsedBytes += size;
                    continue;
                case ChunkKind.Tcache: r.TcacheChunks++; r.TcacheBytes += size; break;
                case ChunkKind.Fastbin: r.FastbinChunks++; r.FastbinBytes += size; break;
                case ChunkKind.Unsorted: r.UnsortedChunks++; r.UnsortedBytes += size; break;
                case ChunkKind.Smallbin: r.SmallbinChunks++; r.SmallbinBytes += size; break;
                case ChunkKind.Largebin: r.LargebinChunks++; r.LargebinBytes += size; break;
            }
            r.FreeChunks++;
            r.FreeBytes += size;
        }
        long mmappedBytes = _heap.Mmapped.Sum(m => m.MappingBytes);
        rows.Add(new HeapSummary
        {
            ProcessId = ProcessId,
            Arena = "mmapped",
            Kind = HeapArenaKind.Mmapped,
            HeapBytes = mmappedBytes,
            UsedChunks = _heap.Mmapped.Count,
            UsedBytes = mmappedBytes,
            MmappedChunks = _heap.Mmapped.Count,
            MmappedBytes = mmappedBytes,
            Complete = _heap.ExpectedMmapCount is null || _heap.ExpectedMmapCount == _heap.Mmapped.Count,
            LibcVersion = LibcVersion,
            Core = _coreLabel,
        });
        return rows;
    }

    /// <summary>The blocks no root reaches, in address order; with <paramref name="unreferencedOnly"/>
    /// only those no other leaked block points to either.</summary>
    public List<LeakedAllocation> FindLeaks(bool unreferencedOnly = false, CancellationToken cancel = default)
    {
        var time = Stopwatch.StartNew();
        HeapBlocks blocks = HeapBlocks.From(_heap);
        SymbolCache symbols = _options.Symbols ?? SymbolCache.Shared;
        List<ModuleMapping> mappings = CoreModules.Mappings(_core, _options.ExecutablePath);
        // The agent's tables hold every tracked block's address: read them, and keep them out of the roots.
        AgentAllocationSites.Reading agent = AgentAllocationSites.Read(_memory, mappings, symbols, _libc.Path);
        IAllocationSiteSource? sites = _options.AllocationSites ?? agent.Sites;
        Statistics.AllocationSites = _options.AllocationSites is not null ? "Allocation sites from the caller's source." : agent.Note;
        if (agent.Warning is not null) Warnings.Add(agent.Warning);
        HeapReachability reach = HeapReachability.Run(_memory, _heap, blocks, Warnings, cancel, agent.NotRoots);
        var describer = new BlockDescriber(_memory, symbols, mappings);
        var leaks = new List<LeakedAllocation>();
        Span<byte> head = stackalloc byte[BlockDescriber.PreviewBytes];
        for (int b = 0; b < blocks.Count; b++)
        {
            if (reach.Reached(b)) continue;
            int refs = reach.ReferencedBy[b];
            if (unreferencedOnly && refs > 0) continue;
            ulong address = blocks.Start(b);
            int n = _memory.Read(address, head[..(int)Math.Min(head.Length, blocks.Size(b))]);
            ulong first = n >= 8 ? BitConverter.ToUInt64(head) : 0;
            StackFrame[]? frames = sites?.Find(address, blocks.Size(b))?.ToArray();
            (string? function, string? location) = frames is null ? (null, null)
                : sites is AgentAllocationSites agentSites ? agentSites.Caller(frames)
                : AllocationPipeline.Caller(frames, f => AllocatorFunctions.IsRuntimeFrame(f, _libc.Path, executable: null));
            if (frames is not null) Statistics.LeaksWithSites++;
            leaks.Add(new LeakedAllocation
            {
                Address = address,
                Size = blocks.Size(b),
                ChunkSize = blocks.ChunkSize(b),
                Kind = refs == 0 ? LeakedAllocationKind.Unreferenced : LeakedAllocationKind.Leaked,
                Arena = ArenaName(blocks.Arena(b)),
                TypeName = describer.TypeName(first),
                Preview = BlockDescriber.Preview(head[..n]),
                ReferencedBy = refs,
                Function = function,
                Location = location,
                Frames = frames,
                ProcessId = ProcessId,
                Core = _coreLabel,
            });
        }
        Statistics.Blocks = blocks.Count;
        Statistics.RootBytes = reach.RootBytes;
        Statistics.ScannedBlockBytes = reach.BlockBytes + reach.LeakedBlockBytes;
        Statistics.Leaked = blocks.Count - Enumerable.Range(0, blocks.Count).Count(reach.Reached);
        Statistics.ScanTime = time.Elapsed;
        return leaks;
    }

    public void Dispose()
    {
        _memory.Dispose();
        _core.Dispose();
    }
}
