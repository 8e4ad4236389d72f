using System.Buffers.Binary;
using LeakTools.Core.Dumps;
using LeakTools.Core.Symbols;
using LeakTools.Core.Tracing;
using LeakTools.Core.Tracing.Agent;

namespace LeakTools.Core.Heap;

/// <summary>The in-process agent (Watch-Allocation -Engine Agent) as a core shows it: its live
/// table (every block it tracks: address, requested size, stack id) and its deduplicated stacks,
/// read through the descriptor the agent exports (leaktools_agent_coreinfo, src/LeakTools.Agent/coreinfo.c),
/// which gives every address and every struct field's offset and size, so no layout is assumed
/// here. The descriptor is found through the agent module's dynamic symbols (the file the core
/// names, read through /proc/PID/root while the process runs, or the staged agent when its
/// build-id is the one in the core), checked by magic and version. Also names the agent's own
/// memory (its data and bss, its tables), which holds copies of block addresses and so must not
/// count as roots.</summary>
internal sealed class AgentAllocationSites : IAllocationSiteSource
{
    public const string DescriptorSymbol = "leaktools_agent_coreinfo";
    private const string Magic = "LeakTools agent";
    private const uint Version = 1;
    private const int InfoBytes = 160;   // struct lt_core_info of version 1, as first released
    private const int InfoBytesWithFreed = 176;   // + the freed cache of checked frees (appended)
    private const int LiveBytes = 40;    // struct lt_core_live

    private readonly CoreMemory _memory;
    private readonly ProcessSymbolizer _symbolizer;
    private readonly Func<StackFrame, bool> _isRuntimeFrame;
    private readonly Descriptor _d;
    private readonly Block[] _blocks;
    private readonly ulong _records;
    private readonly ulong _stackCount;
    private readonly Dictionary<uint, StackFrame[]?> _frames = new();

    private readonly record struct Block(ulong Address, ulong Bytes, uint Stack);

    /// <summary>The fields of struct lt_core_info this reader uses (offsets from the C compiler).</summary>
    private sealed class Descriptor
    {
        public ulong Enabled, Live, StackRecords, StackCount, Filter, FilterBytes, Freed, FreedBytes;
        public int EnabledSize, StackCountSize, RecordPointerSize, MaxDepth, BlockSize;
        public (int Offset, int Size) BlockPtr, BlockBytes, BlockStack, RecordId, RecordDepth, RecordFrames;
        // struct lt_core_live
        public ulong Shards;
        public int ShardCount, ShardSize;
        public (int Offset, int Size) Capacity, Count, Entries;
    }

    private AgentAllocationSites(CoreMemory memory, ProcessSymbolizer symbolizer, Func<StackFrame, bool> isRuntimeFrame, Descriptor d, Block[] blocks, ulong records, ulong stackCount)
    {
        _memory = memory;
        _symbolizer = symbolizer;
        _isRuntimeFrame = isRuntimeFrame;
        _d = d;
        _blocks = blocks;
        _records = records;
        _stackCount = stackCount;
    }

    /// <summary>Blocks in the agent's live table.</summary>
    public int Blocks => _blocks.Length;

    /// <summary>Stack ids in use.</summary>
    public ulong Stacks => _stackCount;

    /// <summary>The first frame outside the C library, the dynamic loader, the agent and operator
    /// new/delete, as Watch-Allocation names a stack's Function and Location.</summary>
    public (string? Function, string? Location) Caller(StackFrame[] frames) => AllocationPipeline.Caller(frames, _isRuntimeFrame);

    /// <summary>What the agent tells about a core.</summary>
    public sealed class Reading
    {
        /// <summary>The agent's module as the core names it; null when no agent is loaded.</summary>
        public string? Module { get; init; }

        /// <summary>The live table, when a session was active and the descriptor checked out.</summary>
        public AgentAllocationSites? Sites { get; set; }

        /// <summary>The agent's own memory, which holds copies of block addresses: not roots.</summary>
        public List<(ulong Lo, ulong Hi)> NotRoots { get; } = new();

        /// <summary>One line for -Verbose.</summary>
        public string? Note { get; set; }

        /// <summary>The agent is loaded but its tables cannot be read: the blocks it tracks may be
        /// held by them and not show as leaked.</summary>
        public string? Warning { get; set; }
    }

    /// <summary>Reads the agent's tables from a core. Never throws for what the core holds: no agent
    /// (Module null), no active session or a descriptor it does not know (Sites null, Note says why).
    /// Two agent builds can be loaded at once (a newer one placed beside an older one still mapped):
    /// both are no roots, and the one with an active session gives the sites.</summary>
    public static Reading Read(CoreMemory memory, IReadOnlyList<ModuleMapping> mappings, SymbolCache symbols, string libcPath)
    {
        List<string> modules = memory.Core.Files.Select(f => f.Path).Distinct()
            .Where(p => Path.GetFileName(StripDeleted(p)) == AgentPlacement.LibraryName).ToList();
        Reading? chosen = null;
        var notRoots = new List<(ulong Lo, ulong Hi)>();
        foreach (string module in modules)
        {
            Reading r = ReadModule(memory, mappings, symbols, libcPath, module);
            notRoots.AddRange(r.NotRoots);
            if (chosen is null || (chosen.Sites is null && r.Sites is not null)) chosen = r;
        }
        if (chosen is null) return new Reading();
        var result = new Reading { Module = chosen.Module, Sites = chosen.Sites, Note = chosen.Note, Warning = chosen.Sites is null ? chosen.Warning : null };
        result.NotRoots.AddRange(notRoots);
        return result;
    }

    private static Reading ReadModule(CoreMemory memory, IReadOnlyList<ModuleMapping> mappings, SymbolCache symbols, string libcPath, string module)
    {
        var reading = new Reading { Module = module };
        List<ModuleMapping> mine = mappings.Where(m => m.Path == module).OrderBy(m => m.Start).ToList();
        ulong? descriptor = null;
        ElfFile? elf = OpenAgent(memory, mine, module, out string? problem);
        if (elf is null)
        {
            reading.Note = $"The agent {module} is loaded, but {problem}: no allocation sites, and its memory counts as roots.";
            reading.Warning = Unreadable(module);
            return reading;
        }
        using (elf)
        {
            // Its writable segments (data, bss: buffers of expired blocks' addresses) are no roots.
            if (LoadBias(elf, mine) is ulong b)
            {
                foreach (ElfSegment s in elf.Segments)
                {
                    if (s.Type == ElfSegment.PT_LOAD && (s.Flags & 2 /* PF_W */) != 0) reading.NotRoots.Add((s.VirtualAddress + b, s.VirtualAddress + b + s.MemorySize));
                }
            }
            ElfSymbol? symbol = null;
            try
            {
                symbol = ElfSymbolReader.Read(elf, symtab: false, dynsym: true, plt: false)
                    .FirstOrDefault(s => s.Name == DescriptorSymbol && s.Type == "OBJECT" && s.IsDefined);
            }
            catch (LeakToolsException) { }
            if (symbol is not null) descriptor = AllocatorFunctions.RuntimeAddress(elf, symbol.Address, mine);
        }
        if (descriptor is not ulong at)
        {
            reading.Note = $"The agent {module} has no {DescriptorSymbol} (an older agent): no allocation sites.";
            reading.Warning = Unreadable(module);
            return reading;
        }
        Descriptor? d = ReadDescriptor(memory, at, out string? why);
        if (d is null)
        {
            reading.Note = $"The agent's descriptor in {module} {why}: no allocation sites.";
            reading.Warning = Unreadable(module);
            return reading;
        }
        if (!TryField(memory, d.Enabled, d.EnabledSize, out ulong enabled) || enabled == 0)
        {
            reading.Note = $"The agent {module} is loaded but no Watch-Allocation session was active when the core was taken: no allocation sites.";
            return reading;
        }
        if (!memory.TryU64(d.StackRecords, out ulong records) || !TryField(memory, d.StackCount, d.StackCountSize, out ulong stackCount))
        {
            reading.Note = "The agent's stack table is not in the core: no allocation sites.";
            return reading;
        }
        // The sampling filter: 4 MiB never written without sampling, so left out of cores; it holds no roots either way.
        if (memory.TryU64(d.Filter, out ulong filter) && filter != 0 && d.FilterBytes is > 0 and < 1UL << 32)
            reading.NotRoots.Add((filter, filter + d.FilterBytes));
        // The freed cache of checked frees (launch mode): addresses of freed blocks only, mostly never written.
        if (d.Freed != 0 && memory.TryU64(d.Freed, out ulong freed) && freed != 0 && d.FreedBytes is > 0 and < 1UL << 32)
            reading.NotRoots.Add((freed, freed + d.FreedBytes));
        Block[] blocks = ReadLiveTable(memory, d, reading.NotRoots, out int badShards);
        var symbolizer = new ProcessSymbolizer(mappings, symbols);
        bool IsRuntime(StackFrame f) => f.Module == module || AllocatorFunctions.IsRuntimeFrame(f, libcPath, executable: null);
        var sites = new AgentAllocationSites(memory, symbolizer, IsRuntime, d, blocks, records, stackCount);
        reading.Note = $"Allocation sites from the agent's live table ({module}): {blocks.Length:N0} blocks, {stackCount:N0} stacks" +
                       (badShards > 0 ? $"; {badShards} shard(s) could not be read" : "") + ".";
        reading.Sites = sites;
        return reading;
    }

    private static string StripDeleted(string path) => path.EndsWith(" (deleted)", StringComparison.Ordinal) ? path[..^" (deleted)".Length] : path;

    /// <summary>The agent's ELF file: where the core's mapping says (through /proc/PID/root or
    /// map_files while the process runs), else the staged agent; with the core's build-id, only a
    /// file that has it.</summary>
    private static ElfFile? OpenAgent(CoreMemory memory, List<ModuleMapping> mine, string module, out string? problem)
    {
        ulong? head = mine.Where(m => m.FileOffset == 0).Select(m => (ulong?)m.Start).FirstOrDefault();
        string? coreBuildId = GlibcModule.ReadBuildId(memory, head);
        var candidates = new List<string>();
        if (mine.Count > 0 && mine[0].OpenPath is string open) candidates.Add(open);
        if (!module.EndsWith(" (deleted)", StringComparison.Ordinal)) candidates.Add(module);
        // The staged agent only when the build-id proves it is the same file.
        if (coreBuildId is not null && AgentPlacement.FindStaged() is string staged) candidates.Add(staged);
        problem = "its file cannot be read";
        foreach (string path in candidates.Distinct())
        {
            ElfFile elf;
            try { elf = ElfFile.Open(path, module); }
            catch (LeakToolsException) { continue; }
            if (coreBuildId is null || elf.BuildId == coreBuildId) return elf;
            problem = $"no file here has its build-id {coreBuildId}";
            elf.Dispose();
        }
        return null;
    }

    private static ulong? LoadBias(ElfFile elf, List<ModuleMapping> mine)
    {
        foreach (ModuleMapping m in mine)
        {
            if (elf.TryFileOffsetToAddress(m.FileOffset, out ulong address)) return m.Start - address;
        }
        return null;
    }

    private static bool TryField(CoreMemory memory, ulong address, int size, out ulong value)
    {
        value = 0;
        if (size == 8) return memory.TryU64(address, out value);
        if (size != 4 || !memory.TryU32(address, out uint v)) return false;
        value = v;
        return true;
    }

    private static ulong Field(ReadOnlySpan<byte> data, (int Offset, int Size) f) =>
        f.Size == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(data[f.Offset..]) : BinaryPrimitives.ReadUInt32LittleEndian(data[f.Offset..]);

    /// <summary>struct lt_core_info and struct lt_core_live, checked: magic, version, every field
    /// inside its struct and of a width this reader handles.</summary>
    private static string Unreadable(string module) =>
        $"The LeakTools agent {module} is loaded in this process but its tables cannot be read by this LeakTools: blocks it was tracking " +
        "may be held by its table and not be reported as leaked. Take the core again after Watch-Allocation has ended, or read it with the LeakTools that attached the agent.";

    private static Descriptor? ReadDescriptor(CoreMemory memory, ulong at, out string? why)
    {
        byte[] info = new byte[InfoBytes];
        if (memory.Read(at, info) < info.Length)
        {
            why = "is not in the core";
            return null;
        }
        ReadOnlySpan<byte> i = info;
        if (!i[..16].SequenceEqual(System.Text.Encoding.ASCII.GetBytes(Magic + "\0")))
        {
            why = "does not start with its magic";
            return null;
        }
        uint version = U32(i, 16), size = U32(i, 20);
        if (version != Version || size < InfoBytes)
        {
            why = $"is version {version} ({size} bytes); this LeakTools reads version {Version}";
            return null;
        }
        (int, int) F(int offset) => ((int)U32(info, offset), (int)U32(info, offset + 4));
        var d = new Descriptor
        {
            Enabled = U64(i, 24),
            Live = U64(i, 32),
            StackRecords = U64(i, 40),
            StackCount = U64(i, 48),
            EnabledSize = (int)U32(i, 56),
            StackCountSize = (int)U32(i, 60),
            RecordPointerSize = (int)U32(i, 64),
            MaxDepth = (int)U32(i, 68),
            BlockSize = (int)U32(i, 72),
            // 76: block_sampled
            BlockPtr = F(80),
            BlockBytes = F(88),
            // 96: block_time
            BlockStack = F(104),
            // 112: block_flags
            RecordId = F(120),
            RecordDepth = F(128),
            RecordFrames = F(136),
            Filter = U64(i, 144),
            FilterBytes = U64(i, 152),
        };
        byte[] more = new byte[InfoBytesWithFreed - InfoBytes];
        if (size >= InfoBytesWithFreed && memory.Read(at + InfoBytes, more) == more.Length)
        {
            d.Freed = U64(more, 0);
            d.FreedBytes = U64(more, 8);
        }
        byte[] live = new byte[LiveBytes];
        if (memory.Read(d.Live, live) < live.Length)
        {
            why = "points at a shard table that is not in the core";
            return null;
        }
        ReadOnlySpan<byte> l = live;
        d.Shards = U64(l, 0);
        d.ShardCount = (int)U32(l, 8);
        d.ShardSize = (int)U32(l, 12);
        d.Capacity = ((int)U32(l, 16), (int)U32(l, 20));
        d.Count = ((int)U32(l, 24), (int)U32(l, 28));
        d.Entries = ((int)U32(l, 32), (int)U32(l, 36));

        static bool Fits((int Offset, int Size) f, int container, params int[] sizes) => f.Offset >= 0 && sizes.Contains(f.Size) && f.Offset + f.Size <= container;
        bool ok = d.ShardCount is > 0 and <= 1 << 20 && d.ShardSize is > 0 and <= 4096 && d.BlockSize is > 0 and <= 4096 &&
                  d.MaxDepth is > 0 and <= 4096 && d.EnabledSize is 4 or 8 && d.StackCountSize is 4 or 8 && d.RecordPointerSize == 8 &&
                  Fits(d.Capacity, d.ShardSize, 4, 8) && Fits(d.Count, d.ShardSize, 4, 8) && Fits(d.Entries, d.ShardSize, 8) &&
                  Fits(d.BlockPtr, d.BlockSize, 8) && Fits(d.BlockBytes, d.BlockSize, 4, 8) && Fits(d.BlockStack, d.BlockSize, 4, 8) &&
                  Fits(d.RecordId, 4096, 4, 8) && Fits(d.RecordDepth, 4096, 4, 8) && d.RecordFrames.Size == 8 && d.RecordFrames.Offset is >= 0 and < 4096;
        why = ok ? null : "describes a layout this LeakTools cannot read";
        return ok ? d : null;
    }

    private static uint U32(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt32LittleEndian(b[at..]);

    private static ulong U64(ReadOnlySpan<byte> b, int at) => BinaryPrimitives.ReadUInt64LittleEndian(b[at..]);

    /// <summary>Every occupied slot of every shard, sorted by address; each shard's slot array is
    /// added to <paramref name="notRoots"/>.</summary>
    private static Block[] ReadLiveTable(CoreMemory memory, Descriptor d, List<(ulong Lo, ulong Hi)> notRoots, out int badShards)
    {
        badShards = 0;
        var blocks = new List<Block>();
        byte[] shard = new byte[d.ShardSize];
        byte[] chunk = new byte[Math.Max(d.BlockSize, 1 << 20) / d.BlockSize * d.BlockSize];
        for (int k = 0; k < d.ShardCount; k++)
        {
            if (memory.Read(d.Shards + (ulong)k * (ulong)d.ShardSize, shard) < shard.Length)
            {
                badShards++;
                continue;
            }
            ulong capacity = Field(shard, d.Capacity), count = Field(shard, d.Count), entries = Field(shard, d.Entries);
            if (entries == 0 || capacity == 0) continue;
            ulong bytes = capacity * (ulong)d.BlockSize;
            if (capacity > 1UL << 32 || count > capacity)
            {
                badShards++;
                continue;
            }
            notRoots.Add((entries, entries + bytes));
            if (count == 0) continue;
            for (ulong done = 0; done < bytes;)
            {
                int want = (int)Math.Min((ulong)chunk.Length, bytes - done);
                int n = memory.Read(entries + done, chunk.AsSpan(0, want));
                for (int at = 0; at + d.BlockSize <= n; at += d.BlockSize)
                {
                    ReadOnlySpan<byte> e = chunk.AsSpan(at, d.BlockSize);
                    ulong address = Field(e, d.BlockPtr);
                    if (address != 0) blocks.Add(new Block(address, Field(e, d.BlockBytes), (uint)Field(e, d.BlockStack)));
                }
                if (n < want)
                {
                    badShards++;
                    break;
                }
                done += (ulong)n;
            }
        }
        Block[] sorted = blocks.ToArray();
        Array.Sort(sorted, (a, b) => a.Address.CompareTo(b.Address));
        return sorted;
    }

    /// <summary>The allocation stack of the block at <paramref name="blockAddress"/>, symbolized,
    /// innermost first; null when the agent did not track it (allocated before the session, or
    /// through a path it does not hook), or when its record cannot be the block's (it asked for
    /// more than <paramref name="usableSize"/> bytes: a stale record of an earlier block there).</summary>
    public IReadOnlyList<StackFrame>? Find(ulong blockAddress, long usableSize)
    {
        int lo = 0, hi = _blocks.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            ulong a = _blocks[mid].Address;
            if (a == blockAddress)
            {
                Block b = _blocks[mid];
                if (b.Stack == 0 || (usableSize >= 0 && b.Bytes > (ulong)usableSize)) return null;
                return FramesOf(b.Stack);
            }
            if (a < blockAddress) lo = mid + 1;
            else hi = mid - 1;
        }
        return null;
    }

    private StackFrame[]? FramesOf(uint id)
    {
        if (_frames.TryGetValue(id, out StackFrame[]? known)) return known;
        StackFrame[]? frames = null;
        ulong[]? addresses = ReadStack(id);
        if (addresses is not null)
        {
            try { frames = _symbolizer.ResolveStack(addresses, adjustReturnAddresses: true).ToArray(); }
            catch (LeakToolsException) { frames = addresses.Select(a => new StackFrame { Address = a }).ToArray(); }
        }
        _frames[id] = frames;
        return frames;
    }

    /// <summary>Record <paramref name="id"/>'s frames: the allocator's entry, then return addresses.</summary>
    private ulong[]? ReadStack(uint id)
    {
        if (id == 0 || id > _stackCount) return null;
        if (!_memory.TryU64(_records + (ulong)id * (ulong)_d.RecordPointerSize, out ulong record) || record == 0) return null;
        if (!TryField(_memory, record + (ulong)_d.RecordId.Offset, _d.RecordId.Size, out ulong storedId) || storedId != id) return null;
        if (!TryField(_memory, record + (ulong)_d.RecordDepth.Offset, _d.RecordDepth.Size, out ulong depth) || depth == 0 || depth > (ulong)_d.MaxDepth) return null;
        byte[] raw = new byte[(int)depth * 8];
        if (_memory.Read(record + (ulong)_d.RecordFrames.Offset, raw) < raw.Length) return null;
        var addresses = new ulong[depth];
        for (int i = 0; i < addresses.Length; i++) addresses[i] = BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan(i * 8));
        return addresses;
    }
}
