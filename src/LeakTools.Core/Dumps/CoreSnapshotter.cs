using System.Diagnostics;
using System.Globalization;
using System.Text;
using LeakTools.Core.Interop;
using LeakTools.Core.ProcFs;
using LeakTools.Core.Tracing;

namespace LeakTools.Core.Dumps;

/// <summary>How the memory of a snapshot is taken while the target is stopped.</summary>
public enum SnapshotStrategy
{
    /// <summary>Mapped (Buffered when compressing) when the memory to copy fits in half of MemAvailable, else Direct.</summary>
    Auto,
    /// <summary>Copy written-to memory straight into the core file's page cache (a shared mapping
    /// faulted in beforehand) while stopped: one copy, nothing left to write after resuming.</summary>
    Mapped,
    /// <summary>Copy written-to memory into prepared RAM while stopped, write the file after resuming.</summary>
    Buffered,
    /// <summary>Write the whole file while the target is stopped (no extra RAM; a longer freeze).</summary>
    Direct,
}

public sealed class SnapshotOptions
{
    /// <summary>Folder for the core.</summary>
    public string Destination { get; set; } = ".";
    /// <summary>File name; default core.NAME.PID.yyyyMMddTHHmmss (plus .zst when compressed).</summary>
    public string? FileName { get; set; }
    public bool Compress { get; set; }
    public SnapshotStrategy Strategy { get; set; } = SnapshotStrategy.Auto;
    /// <summary>How long to wait for every thread to stop.</summary>
    public TimeSpan StopTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Keep every writable mapping whole, whatever coredump_filter says (heap analysis:
    /// shared file mappings may hold the only pointer to a block).</summary>
    public bool IncludeAllWritable { get; set; }

    /// <summary>Tests: runs while the target is stopped (e.g. to kill it mid-snapshot).</summary>
    internal Action<int>? WhileStopped { get; set; }

    /// <summary>Tests: the room reserved for headers and notes in a mapped core.</summary>
    internal long? HeaderReserve { get; set; }
}

/// <summary>Writes an ELF core of a live process without ending it, as gcore does but without gdb:
/// seize and stop every thread, record registers (NT_PRSTATUS, NT_PRFPREG, NT_X86_XSTATE) and copy
/// the memory the kernel would dump (honouring /proc/PID/coredump_filter), resume, then write
/// NT_PRPSINFO, NT_SIGINFO, NT_AUXV, NT_FILE and one PT_LOAD per mapping.</summary>
public sealed unsafe class CoreSnapshotter
{
    private const int CopyChunk = 4 << 20;
    private readonly ProcRoot _root;
    private readonly Action<string>? _verbose;
    private bool _allWritable;

    public CoreSnapshotter(ProcRoot? root = null, Action<string>? verbose = null)
    {
        _root = root ?? ProcRoot.Default;
        _verbose = verbose;
    }

    private sealed class Segment
    {
        public ulong Start, End;
        public uint Flags;
        public long FileSize;
        public long Offset;
        public bool Volatile; // may change while running: copied while frozen
        public List<(nint Ptr, long Length)>? Captured;
        public byte[]? Small;
        public bool InFile; // copied into the mapped core file already
    }

    /// <summary>Where the headers and notes go.</summary>
    private readonly record struct Placement(long PhOffset, long NotesOffset, long Total);

    public CoreDump Capture(int pid, SnapshotOptions options, CancellationToken cancel = default)
    {
        var phase = Stopwatch.StartNew();
        var reader = new ProcessReader(_root);
        ProcessIdentity identity = reader.ReadIdentity(pid);
        if (identity.Status.IsKernelThread)
            throw new LeakToolsException(FailureKind.NotSupported, "KernelThread", $"Process {pid} ({identity.Name}) is a kernel thread: it has no user memory to dump.", pid);
        if (identity.Status.IsZombie)
            throw new LeakToolsException(FailureKind.ProcessExited, "ProcessIsZombie", $"Process {pid} ({identity.Name}) has exited (zombie): there is nothing left to dump.", pid);

        uint filter = CoredumpFilter.Read(pid, _root);
        _allWritable = options.IncludeAllWritable;
        List<SmapsMapping> before = ReadSmaps(pid, identity);
        byte[] auxv = ReadProcBytes(pid, "auxv", identity);
        string? executable = ProcFields.Link(_root.File(pid, "exe"));

        long volatileBytes = 0, diskEstimate = 0;
        foreach (SmapsMapping m in before)
        {
            var part = CoredumpFilter.Decide(m, filter, HasAnon(m), _allWritable);
            if (part == CoredumpFilter.Part.Whole && m.Permissions.StartsWith('r'))
            {
                if (IsVolatile(m)) volatileBytes += (long)(m.End - m.Start);
                diskEstimate += m.Values.Get(SmapsField.Rss);
            }
        }
        SnapshotStrategy strategy = options.Strategy;
        if (strategy == SnapshotStrategy.Auto)
        {
            long available = MeminfoAvailable();
            strategy = volatileBytes > available / 2 ? SnapshotStrategy.Direct
                : options.Compress ? SnapshotStrategy.Buffered : SnapshotStrategy.Mapped;
            if (strategy == SnapshotStrategy.Direct)
                _verbose?.Invoke($"{volatileBytes >> 20} MiB to copy exceeds half of MemAvailable ({available >> 20} MiB): writing while the process is stopped.");
        }

        DateTime time = DateTime.Now;
        string name = options.FileName ?? DefaultFileName(identity, time, options.Compress);
        string destination = Path.GetFullPath(options.Destination);
        using var output = CoreOutputFile.Create(destination, name, options.Compress);
        long? free = LibcFiles.FreeBytes(destination);
        if (free is not null && free < diskEstimate / (options.Compress ? 8 : 1))
        {
            throw new LeakToolsException(FailureKind.WriteFailed, "DestinationFull",
                $"{destination} has {free >> 20} MiB free, the core of process {pid} needs about {diskEstimate >> 20} MiB" +
                (options.Compress ? " before compression" : "") + ". Free space there or choose another -Destination.", destination);
        }

        if (strategy == SnapshotStrategy.Mapped && options.Compress) strategy = SnapshotStrategy.Buffered;
        using var arena = new CaptureArena(strategy == SnapshotStrategy.Buffered ? volatileBytes + (volatileBytes / 16) : 0);
        long headerReserve = 0;
        MappedCoreArea? area = null;
        if (strategy == SnapshotStrategy.Mapped)
        {
            headerReserve = options.HeaderReserve ?? HeaderReserve(pid, before, auxv.Length);
            try { area = new MappedCoreArea(output.Handle, headerReserve, volatileBytes + volatileBytes / 16 + (1 << 20)); }
            catch (IOException ex) { throw output.WriteFailure(ex); }
        }
        using var areaScope = area;
        cancel.ThrowIfCancellationRequested();
        TimeSpan prepared = phase.Elapsed;

        List<ThreadInfo> threads;
        ProcessInfo process;
        List<Segment> segments;
        List<(ulong, ulong, ulong, string)> files;
        byte[] notes;
        Placement place;
        TimeSpan freeze;
        using (PtraceSession session = PtraceSession.Seize(pid, 0, root: _root))
        {
            try
            {
                session.StopAll(options.StopTimeout);
                time = DateTime.Now; // the moment the core shows
                options.WhileStopped?.Invoke(pid);
                List<SmapsMapping> maps = ReadMaps(pid, identity);
                if (maps.Count == 0 || !Alive(pid)) throw new ProcessExitedException(pid);
                threads = ReadThreads(session, pid);
                process = ReadProcessInfo(pid, identity);
                segments = Plan(session, maps, before, filter, pid, identity, out files);
                notes = BuildNotes(threads, process, auxv, files, filter, strategy, time);
                if (strategy == SnapshotStrategy.Mapped)
                {
                    foreach (Segment s in segments)
                    {
                        if (!s.Volatile || s.FileSize == 0 || s.Small is not null) continue;
                        if (area!.Allocate(s.FileSize) is { } block)
                        {
                            ReadLarge(pid, s.Start, (byte*)block.Memory, s.FileSize);
                            s.Offset = block.FileOffset;
                            s.InFile = true;
                        }
                        else CaptureSegment(session, s, arena); // mappings grew since smaps was read
                    }
                    place = LayoutAfter(segments, area!.UsedEnd, headerReserve, notes.Length);
                }
                else
                {
                    place = Layout(segments, notes.Length);
                    if (strategy == SnapshotStrategy.Buffered)
                    {
                        foreach (Segment s in segments)
                        {
                            if (s.Volatile && s.FileSize > 0 && s.Small is null) CaptureSegment(session, s, arena);
                        }
                    }
                    else
                    {
                        WriteCore(output, session, segments, notes, place, cancel);
                    }
                }
                // A target killed while stopped leaves a zombie whose reads come back empty or short.
                if (!Alive(pid)) throw new ProcessExitedException(pid);
            }
            finally
            {
                session.Detach();
                freeze = session.FrozenFor;
            }
        }
        _verbose?.Invoke($"Process {pid} was stopped for {freeze.TotalMilliseconds:0.0} ms ({strategy}; {threads.Count} threads, {segments.Count} mappings; " +
                         $"prepared in {prepared.TotalMilliseconds:0} ms).");
        TimeSpan resumed = phase.Elapsed;

        // The freeze time goes into our own note now that it is known (same size, so the layout holds).
        byte[] finalNotes = BuildNotes(threads, process, auxv, files, filter, strategy, time, freeze);
        if (strategy != SnapshotStrategy.Direct) WriteCore(output, null, segments, finalNotes, place, cancel, pid);
        else if (!output.Compressed) output.Write(place.NotesOffset, finalNotes);
        if (area is not null)
        {
            area.PunchZeroPages();
            area.Dispose();
        }
        long total = place.Total;
        string path = output.Commit(total);
        _verbose?.Invoke($"Wrote {path} ({total >> 20} MiB) in {(phase.Elapsed - resumed).TotalMilliseconds:0} ms after resuming; {phase.Elapsed.TotalMilliseconds:0} ms in all.");

        return new CoreDump
        {
            Path = path,
            Id = pid,
            Name = identity.Name,
            Executable = executable,
            CommandLine = identity.CommandLine,
            Uid = identity.Uid,
            Time = time,
            Size = new FileInfo(path).Length,
            Source = CoreDumpSource.Snapshot,
            Compression = options.Compress ? "zstd" : null,
            Threads = threads.Count,
            FreezeTime = freeze,
        };
    }

    public static string DefaultFileName(ProcessIdentity identity, DateTime time, bool compress)
    {
        var sb = new StringBuilder();
        foreach (char c in identity.Name) sb.Append(char.IsLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_');
        return $"core.{sb}.{identity.Id}.{time.ToString("yyyyMMdd'T'HHmmss", CultureInfo.InvariantCulture)}" + (compress ? ".zst" : "");
    }

    private bool Alive(int pid) => ProcFields.IsAlive(_root, pid);

    private static bool HasAnon(SmapsMapping m) => m.Values.Get(SmapsField.Anonymous) > 0 || m.Values.Get(SmapsField.Swap) > 0;

    /// <summary>Memory that can change while the process runs: writable or shared mappings and
    /// anything written to. Read-only file text cannot, and is read after resuming.</summary>
    private static bool IsVolatile(SmapsMapping m) =>
        m.Permissions.Contains('w') || (m.Permissions.Length > 3 && m.Permissions[3] == 's') || HasAnon(m) || !m.Path.StartsWith('/');

    private long MeminfoAvailable()
    {
        string? text = ProcFile.TryReadText(_root.File("meminfo"), out _);
        foreach (string line in (text ?? "").Split('\n'))
        {
            if (!line.StartsWith("MemAvailable:", StringComparison.Ordinal)) continue;
            string[] parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length > 1 && long.TryParse(parts[1], out long kb)) return kb * 1024;
        }
        return long.MaxValue / 4;
    }

    private List<SmapsMapping> ReadSmaps(int pid, ProcessIdentity identity) =>
        SmapsParser.ParseMappings(ReadProcBytes(pid, "smaps", identity));

    private List<SmapsMapping> ReadMaps(int pid, ProcessIdentity identity) =>
        SmapsParser.ParseMappings(ReadProcBytes(pid, "maps", identity));

    private byte[] ReadProcBytes(int pid, string name, ProcessIdentity identity)
    {
        string path = _root.File(pid, name);
        int errno = ProcFile.TryRead(path, out ReadOnlySpan<byte> content);
        if (errno != 0)
        {
            if (errno is Errno.EACCES or Errno.EPERM) throw new ProcessAccessDeniedException(pid, path, identity.Name);
            throw ProcErrors.FromErrno(errno, pid, path, existedBefore: true);
        }
        return content.ToArray();
    }

    private List<ThreadInfo> ReadThreads(PtraceSession session, int pid)
    {
        var list = new List<ThreadInfo>();
        foreach (int tid in session.Threads.Keys.OrderBy(t => t == pid ? 0 : 1).ThenBy(t => t))
        {
            string stat = ProcFile.TryReadText(_root.File(pid, $"task/{tid}/stat"), out _) ?? "";
            string status = ProcFile.TryReadText(_root.File(pid, $"task/{tid}/status"), out _) ?? "";
            string[] f = StatFields(stat);
            double tick = Libc.SysConf(Libc._SC_CLK_TCK) is long t and > 0 ? t : 100;
            list.Add(new ThreadInfo
            {
                Tid = tid,
                ParentId = Field(f, 1),
                ProcessGroup = Field(f, 2),
                Session = Field(f, 3),
                UserTime = TimeSpan.FromSeconds(Field(f, 11) / tick),
                SystemTime = TimeSpan.FromSeconds(Field(f, 12) / tick),
                SignalsPending = ProcFields.StatusHex(status, "SigPnd") | ProcFields.StatusHex(status, "ShdPnd"),
                SignalsBlocked = ProcFields.StatusHex(status, "SigBlk"),
                Registers = session.GetRegisters(tid),
                FpRegisters = session.GetRegisterSet(tid, Ptrace.NT_PRFPREG, 512),
                XState = session.GetRegisterSet(tid, Ptrace.NT_X86_XSTATE),
            });
        }
        return list;
    }

    private ProcessInfo ReadProcessInfo(int pid, ProcessIdentity identity)
    {
        string stat = ProcFile.TryReadText(_root.File(pid, "stat"), out _) ?? "";
        string status = ProcFile.TryReadText(_root.File(pid, "status"), out _) ?? "";
        string[] f = StatFields(stat);
        uint gid = ProcFields.StatusFirst(status, "Gid");
        return new ProcessInfo
        {
            Pid = pid,
            ParentId = Field(f, 1),
            ProcessGroup = Field(f, 2),
            Session = Field(f, 3),
            State = identity.Status.State == '?' ? 'R' : identity.Status.State, // as it was before we stopped it, not 't'
            Nice = Field(f, 16),
            Flags = (ulong)Field(f, 6),
            Uid = identity.Status.RealUid,
            Gid = gid,
            Comm = identity.Comm,
            Arguments = identity.CommandLine,
        };
    }

    /// <summary>The fields of a stat line after "(comm)": [0] is the state.</summary>
    private static string[] StatFields(string stat)
    {
        int close = stat.LastIndexOf(')');
        return close < 0 ? Array.Empty<string>() : stat[(close + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
    }

    private static int Field(string[] f, int i) => i < f.Length && long.TryParse(f[i], out long v) ? (int)v : 0;

    private List<Segment> Plan(PtraceSession session, List<SmapsMapping> maps, List<SmapsMapping> before, uint filter, int pid,
        ProcessIdentity identity, out List<(ulong, ulong, ulong, string)> files)
    {
        var known = new Dictionary<(ulong, ulong, string, ulong), SmapsMapping>();
        foreach (SmapsMapping m in before) known[(m.Start, m.End, m.Permissions, m.Inode)] = m;
        // Mappings that appeared or changed since smaps was read: read smaps again (still stopped).
        if (maps.Any(m => !known.ContainsKey((m.Start, m.End, m.Permissions, m.Inode))))
        {
            foreach (SmapsMapping m in ReadSmaps(pid, identity)) known[(m.Start, m.End, m.Permissions, m.Inode)] = m;
        }
        files = new List<(ulong, ulong, ulong, string)>();
        var segments = new List<Segment>(maps.Count);
        foreach (SmapsMapping header in maps)
        {
            SmapsMapping m = known.TryGetValue((header.Start, header.End, header.Permissions, header.Inode), out SmapsMapping? full) ? full : header;
            if (m.Path.StartsWith('/')) files.Add((m.Start, m.End, m.Offset, m.Path));
            uint flags = (m.Permissions[0] == 'r' ? ElfCore.PF_R : 0) | (m.Permissions[1] == 'w' ? ElfCore.PF_W : 0) | (m.Permissions[2] == 'x' ? ElfCore.PF_X : 0);
            var s = new Segment { Start = m.Start, End = m.End, Flags = flags };
            var part = m.Permissions[0] == 'r' ? CoredumpFilter.Decide(m, filter, HasAnon(m), _allWritable) : CoredumpFilter.Part.None;
            if (part == CoredumpFilter.Part.Whole)
            {
                s.FileSize = (long)(m.End - m.Start);
                s.Volatile = IsVolatile(m);
            }
            else if (part == CoredumpFilter.Part.FirstPage)
            {
                byte[] page = new byte[ElfCore.PageSize];
                int got = session.ReadMemory(m.Start, page);
                if (got >= 4 && page[0] == 0x7f && page[1] == (byte)'E' && page[2] == (byte)'L' && page[3] == (byte)'F')
                {
                    s.FileSize = ElfCore.PageSize;
                    s.Small = page;
                }
            }
            segments.Add(s);
        }
        return segments;
    }

    private static byte[] BuildNotes(List<ThreadInfo> threads, ProcessInfo process, byte[] auxv,
        List<(ulong, ulong, ulong, string)> files, uint filter, SnapshotStrategy strategy, DateTime time, TimeSpan? freeze = null)
    {
        var nb = new CoreNoteBuilder();
        bool first = true;
        foreach (ThreadInfo t in threads)
        {
            nb.Add("CORE", ElfCore.NT_PRSTATUS, CoreNoteBuilder.Prstatus(t, 0));
            if (first)
            {
                nb.Add("CORE", ElfCore.NT_PRPSINFO, CoreNoteBuilder.Prpsinfo(process));
                nb.Add("CORE", ElfCore.NT_SIGINFO, CoreNoteBuilder.Siginfo(0));
                nb.Add("CORE", ElfCore.NT_AUXV, auxv);
                if (files.Count > 0) nb.Add("CORE", ElfCore.NT_FILE, CoreNoteBuilder.FileNote(files));
            }
            if (t.FpRegisters is not null) nb.Add("CORE", ElfCore.NT_PRFPREG, t.FpRegisters);
            if (t.XState is not null) nb.Add("LINUX", ElfCore.NT_X86_XSTATE, t.XState);
            first = false;
        }
        // Fixed-width values so that the note keeps its size when the freeze time is filled in.
        long micros = (long)((freeze ?? TimeSpan.Zero).Ticks / 10);
        string info = $"tool=LeakTools {typeof(CoreSnapshotter).Assembly.GetName().Version}\nmethod=Snapshot\nstrategy={strategy}\n" +
                      $"coredump_filter=0x{filter:x2}\ntime={new DateTimeOffset(time).ToUnixTimeMilliseconds():D15}\nfreeze_us={micros:D15}\n";
        nb.Add(ElfCore.LeakToolsNoteName, ElfCore.NT_LEAKTOOLS_INFO, Encoding.ASCII.GetBytes(info));
        return nb.ToArray();
    }

    private static long NotesOffset(int segmentCount) => ElfCore.NotesOffset(segmentCount);

    /// <summary>Assigns file offsets: headers, notes, then page-aligned segment data.</summary>
    private static Placement Layout(List<Segment> segments, int notesLength)
    {
        long offset = ElfCore.AlignUp(NotesOffset(segments.Count) + notesLength, ElfCore.PageSize);
        foreach (Segment s in segments)
        {
            s.Offset = offset;
            offset += s.FileSize;
        }
        return new Placement(ElfCore.EhdrSize, NotesOffset(segments.Count), offset);
    }

    /// <summary>Mapped layout: segments already copied into the file keep their offsets, the rest
    /// follow them; headers and notes go into the reserved front if they fit, else at the end.</summary>
    private static Placement LayoutAfter(List<Segment> segments, long usedEnd, long headerReserve, int notesLength)
    {
        long offset = ElfCore.AlignUp(usedEnd, ElfCore.PageSize);
        foreach (Segment s in segments)
        {
            if (s.InFile) continue;
            s.Offset = offset;
            offset += s.FileSize;
        }
        if (NotesOffset(segments.Count) + notesLength <= headerReserve)
            return new Placement(ElfCore.EhdrSize, NotesOffset(segments.Count), offset);
        long phoff = offset;
        long notesAt = phoff + (long)ElfCore.PhdrSize * (segments.Count + 1);
        return new Placement(phoff, notesAt, notesAt + notesLength);
    }

    /// <summary>Room at the front of a mapped core for headers and notes, sized generously from
    /// what the process has now (mappings and threads may grow before it stops; if they outgrow
    /// it, headers and notes go to the end of the file instead).</summary>
    private long HeaderReserve(int pid, List<SmapsMapping> maps, int auxvLength)
    {
        int threads = 1;
        try { threads = Directory.GetDirectories(_root.File(pid, "task")).Length; } catch (IOException) { }
        long pathBytes = maps.Sum(m => (long)m.Path.Length + 25);
        long bytes = ElfCore.EhdrSize + (long)ElfCore.PhdrSize * (maps.Count * 2 + 64)
                     + (threads * 2L + 16) * 6144 + 2 * pathBytes + auxvLength + 8192;
        return ElfCore.AlignUp(bytes, ElfCore.PageSize);
    }

    private static void CaptureSegment(PtraceSession session, Segment s, CaptureArena arena)
    {
        s.Captured = new List<(nint, long)>();
        const long Piece = 256L << 20;
        for (long done = 0; done < s.FileSize; done += Piece)
        {
            long len = Math.Min(Piece, s.FileSize - done);
            byte* p = arena.Allocate(len);
            ReadRange(session.ProcessId, s.Start + (ulong)done, new Span<byte>(p, (int)len));
            s.Captured.Add(((nint)p, len));
        }
    }

    /// <summary>Reads a range of any length into <paramref name="dest"/>, 1 GiB at a time.</summary>
    private static void ReadLarge(int pid, ulong address, byte* dest, long length)
    {
        for (long done = 0; done < length; done += 1L << 30)
            ReadRange(pid, address + (ulong)done, new Span<byte>(dest + done, (int)Math.Min(1L << 30, length - done)));
    }

    /// <summary>Reads a range; pages that cannot be read (beyond a file's end, vanished) stay zero.</summary>
    private static void ReadRange(int pid, ulong address, Span<byte> dest)
    {
        int done = 0;
        while (done < dest.Length)
        {
            int got = ProcessMemoryAccess.Read(pid, address + (ulong)done, dest[done..]);
            done += got;
            if (done >= dest.Length) break;
            // unreadable page: leave it zero and go on with the next one
            int skip = ElfCore.PageSize - (int)((address + (ulong)done) % ElfCore.PageSize);
            dest.Slice(done, Math.Min(skip, dest.Length - done)).Clear();
            done += skip;
        }
    }

    private static void WriteCore(CoreOutputFile output, PtraceSession? frozen, List<Segment> segments, byte[] notes, Placement place,
        CancellationToken cancel, int pid = 0)
    {
        var (ehdr, phdrs) = ElfCore.HeaderParts(
            segments.Select(s => new CoreSegment(s.Start, s.End - s.Start, s.Offset, s.FileSize, s.Flags)).ToList(), place.PhOffset, place.NotesOffset, notes.Length);
        bool inOrder = place.PhOffset == ElfCore.EhdrSize;
        if (inOrder)
        {
            output.Write(0, [.. ehdr, .. phdrs]);
            output.Write(place.NotesOffset, notes);
        }
        else output.Write(0, ehdr);
        byte[]? buffer = null;
        foreach (Segment s in segments.OrderBy(s => s.Offset))
        {
            if (s.FileSize == 0 || s.InFile) continue;
            cancel.ThrowIfCancellationRequested();
            if (s.Small is not null)
            {
                output.Write(s.Offset, s.Small);
                continue;
            }
            if (s.Captured is not null)
            {
                long at = s.Offset;
                foreach (var (ptr, len) in s.Captured)
                {
                    output.Write(at, new ReadOnlySpan<byte>((void*)ptr, (int)len));
                    at += len;
                }
                continue;
            }
            buffer ??= new byte[CopyChunk];
            int target = frozen?.ProcessId ?? pid;
            for (long done = 0; done < s.FileSize; done += CopyChunk)
            {
                int len = (int)Math.Min(CopyChunk, s.FileSize - done);
                Span<byte> chunk = buffer.AsSpan(0, len);
                if (frozen is null && !Directory.Exists($"/proc/{target}")) throw new ProcessExitedException(target);
                ReadRange(target, s.Start + (ulong)done, chunk);
                output.Write(s.Offset + done, chunk);
            }
        }
        if (!inOrder)
        {
            output.Write(place.PhOffset, phdrs);
            output.Write(place.NotesOffset, notes);
        }
    }
}
