using System.Buffers.Binary;
using System.Text;
using LeakTools.Core.Tracing;

namespace LeakTools.Core.Dumps;

/// <summary>One PT_LOAD of a core: memory [VirtualAddress, +MemorySize) whose first FileSize
/// bytes are stored at FileOffset (the rest reads as zero: not dumped).</summary>
public sealed record CoreSegment(ulong VirtualAddress, ulong MemorySize, long FileOffset, long FileSize, uint Flags)
{
    public ulong End => VirtualAddress + MemorySize;
    public bool Readable => (Flags & ElfCore.PF_R) != 0;
    public bool Writable => (Flags & ElfCore.PF_W) != 0;
    public bool Executable => (Flags & ElfCore.PF_X) != 0;
}

/// <summary>One thread of a core (an NT_PRSTATUS note, with its register sets).</summary>
public sealed class CoreThread
{
    public int Tid { get; init; }
    public int Signal { get; init; }
    public UserRegisters Registers { get; init; }
    public byte[]? FpRegisters { get; internal set; }
    public byte[]? XState { get; internal set; }
}

/// <summary>NT_PRPSINFO: who the process was.</summary>
public sealed class CoreProcessInfo
{
    public int Pid { get; init; }
    public int ParentId { get; init; }
    public uint Uid { get; init; }
    public uint Gid { get; init; }
    public char State { get; init; }
    /// <summary>pr_fname: comm, at most 15 characters.</summary>
    public string Name { get; init; } = "";
    /// <summary>pr_psargs: the arguments joined by spaces, cut at 79 bytes.</summary>
    public string Arguments { get; init; } = "";
}

/// <summary>One NT_FILE entry: a file-backed mapping.</summary>
public sealed record CoreFileMapping(ulong Start, ulong End, ulong FileOffset, string Path);

/// <summary>Reads ELF cores (the kernel's, gcore's, LeakTools snapshots; plain or compressed with
/// zstd, xz or lz4): program headers, threads and registers, NT_PRPSINFO, NT_FILE, NT_AUXV, the
/// signal, and memory by address. <see cref="ReadHeader"/> reads only the notes (cheap, also for
/// compressed cores); <see cref="Open"/> gives memory access (a compressed core is unpacked to a
/// temporary file first). A truncated core opens with <see cref="Problem"/> set.</summary>
public sealed class CoreFile : IDisposable
{
    private delegate int ReadAtFunc(long offset, Span<byte> buffer);
    private ReadAtFunc _readAt = (_, _) => 0;
    private FileStream? _file;
    private string? _tempPath;

    private CoreFile() { }

    public string Path { get; private set; } = "";
    /// <summary>zstd, xz, lz4, or null.</summary>
    public string? Compression { get; private set; }
    /// <summary>e_machine (62 for x86-64).</summary>
    public ushort Machine { get; private set; }
    /// <summary>Bytes of the (uncompressed) core that are present.</summary>
    public long Length { get; private set; }
    public List<CoreSegment> Segments { get; } = new();
    public List<CoreThread> Threads { get; } = new();
    public CoreProcessInfo? Process { get; private set; }
    public List<CoreFileMapping> Files { get; } = new();
    public byte[]? Auxv { get; private set; }
    /// <summary>The signal in NT_SIGINFO (or the first thread's pr_cursig); null when 0.</summary>
    public int? Signal { get; private set; }
    /// <summary>Key=value pairs of the LEAKTOOLS note (snapshots only).</summary>
    public Dictionary<string, string> LeakToolsInfo { get; } = new(StringComparer.Ordinal);
    /// <summary>What is wrong with the file (truncated, corrupt notes), or null.</summary>
    public string? Problem { get; private set; }
    public bool Truncated { get; private set; }

    public bool IsSnapshot => LeakToolsInfo.GetValueOrDefault("method") == "Snapshot";

    /// <summary>The open (uncompressed) core file, for readers that map it (the heap scan); null
    /// for a core opened with <see cref="ReadHeader"/>.</summary>
    internal Microsoft.Win32.SafeHandles.SafeFileHandle? DataHandle => _file?.SafeFileHandle;

    /// <summary>The executable: the NT_FILE entry holding AT_PHDR or AT_ENTRY, else the first one.</summary>
    public string? Executable
    {
        get
        {
            foreach (ulong key in new ulong[] { 3 /* AT_PHDR */, 9 /* AT_ENTRY */ })
            {
                ulong? addr = AuxvValue(key);
                if (addr is null) continue;
                CoreFileMapping? m = Files.FirstOrDefault(f => f.Start <= addr && addr < f.End);
                if (m is not null) return m.Path;
            }
            return Files.Count > 0 ? Files[0].Path : null;
        }
    }

    public ulong? AuxvValue(ulong type)
    {
        if (Auxv is null) return null;
        for (int i = 0; i + 16 <= Auxv.Length; i += 16)
        {
            ulong t = BinaryPrimitives.ReadUInt64LittleEndian(Auxv.AsSpan(i));
            if (t == 0) break;
            if (t == type) return BinaryPrimitives.ReadUInt64LittleEndian(Auxv.AsSpan(i + 8));
        }
        return null;
    }

    /// <summary>The compression of a file by its magic bytes (zstd, xz, lz4), or null.</summary>
    public static string? DetectCompression(ReadOnlySpan<byte> head)
    {
        if (head.Length >= 4 && head[0] == 0x28 && head[1] == 0xB5 && head[2] == 0x2F && head[3] == 0xFD) return "zstd";
        if (head.Length >= 6 && head[0] == 0xFD && head[1] == (byte)'7' && head[2] == (byte)'z' && head[3] == (byte)'X' && head[4] == (byte)'Z' && head[5] == 0) return "xz";
        if (head.Length >= 4 && head[0] == 0x04 && head[1] == 0x22 && head[2] == 0x4D && head[3] == 0x18) return "lz4";
        return null;
    }

    public static Stream Decompress(Stream raw, string compression) => compression switch
    {
        "zstd" => new ZstdSharp.DecompressionStream(raw),
        "xz" => new SharpCompress.Compressors.Xz.XZStream(raw),
        "lz4" => K4os.Compression.LZ4.Streams.LZ4Stream.Decode(raw),
        _ => raw,
    };

    /// <summary>Reads headers and notes only. Throws <see cref="LeakToolsException"/> (InvalidData)
    /// when the file is not an ELF core at all.</summary>
    public static CoreFile ReadHeader(string path)
    {
        using var fs = OpenRead(path);
        Span<byte> head = stackalloc byte[8];
        int n = fs.Read(head);
        string? compression = DetectCompression(head[..n]);
        fs.Position = 0;
        var core = new CoreFile { Path = path, Compression = compression };
        if (compression is null)
        {
            core._readAt = (off, buf) => RandomAccess.Read(fs.SafeFileHandle, buf, off);
            core.Length = fs.Length;
            core.Parse();
            return core;
        }
        // Unpack just the front of the file, far enough for the notes.
        using Stream unpacked = Decompress(fs, compression);
        var prefix = new MemoryStream();
        long want = 64 * 1024;
        bool eof = false;
        void Fill(long upTo)
        {
            byte[] chunk = new byte[1 << 16];
            while (!eof && prefix.Length < upTo)
            {
                int got;
                try { got = unpacked.Read(chunk, 0, (int)Math.Min(chunk.Length, upTo - prefix.Length)); }
                catch (Exception ex) when (ex is IOException or InvalidDataException or InvalidOperationException or ArgumentException or NotSupportedException)
                {
                    core.Problem = $"the {compression} stream is corrupt or truncated ({ex.Message})";
                    eof = true;
                    break;
                }
                if (got <= 0) { eof = true; break; }
                prefix.Write(chunk, 0, got);
            }
        }
        Fill(want);
        core._readAt = (off, buf) =>
        {
            if (off + buf.Length > prefix.Length) Fill(Math.Min(off + buf.Length, 256L << 20));
            byte[] b = prefix.GetBuffer();
            if (off >= prefix.Length) return 0;
            int len = (int)Math.Min(buf.Length, prefix.Length - off);
            b.AsSpan((int)off, len).CopyTo(buf);
            return len;
        };
        core.Length = -1; // unknown without unpacking everything
        string? earlier = core.Problem;
        core.Parse();
        core.Problem ??= earlier;
        return core;
    }

    /// <summary>Opens a core for memory access.</summary>
    public static CoreFile Open(string path)
    {
        var fs = OpenRead(path);
        Span<byte> head = stackalloc byte[8];
        int n = fs.Read(head);
        string? compression = DetectCompression(head[..n]);
        fs.Position = 0;
        string? temp = null;
        if (compression is not null)
        {
            temp = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"leaktools-core-{Environment.ProcessId}-{Guid.NewGuid():N}");
            try
            {
                using (Stream unpacked = Decompress(fs, compression))
                using (var tmp = new FileStream(temp, FileMode.CreateNew, FileAccess.Write))
                {
                    try { unpacked.CopyTo(tmp, 1 << 20); }
                    catch (Exception ex) when (ex is IOException or InvalidDataException or InvalidOperationException or ArgumentException) { /* keep what unpacked */ }
                }
                fs.Dispose();
                fs = new FileStream(temp, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1);
            }
            catch
            {
                fs.Dispose();
                File.Delete(temp);
                throw;
            }
        }
        var core = new CoreFile { Path = path, Compression = compression, _file = fs, _tempPath = temp, Length = fs.Length };
        FileStream f = fs;
        core._readAt = (off, buf) => RandomAccess.Read(f.SafeFileHandle, buf, off);
        core.Parse();
        return core;
    }

    private static FileStream OpenRead(string path)
    {
        try { return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1); }
        catch (FileNotFoundException) { throw new LeakToolsException(FailureKind.NotFound, "CoreNotFound", $"Cannot find the core file {path}.", path); }
        catch (UnauthorizedAccessException ex) { throw new LeakToolsException(FailureKind.AccessDenied, "AccessDenied", $"Cannot read {path}: {ex.Message}", path, ex); }
    }

    private int ReadAt(long offset, Span<byte> buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = _readAt(offset + total, buffer[total..]);
            if (n <= 0) break;
            total += n;
        }
        return total;
    }

    private void Parse()
    {
        byte[] eh = new byte[ElfCore.EhdrSize];
        if (ReadAt(0, eh) < ElfCore.EhdrSize || eh[0] != 0x7f || eh[1] != 'E' || eh[2] != 'L' || eh[3] != 'F')
            throw new LeakToolsException(FailureKind.InvalidData, "NotACore", $"{Path} is not an ELF file{(Compression is null ? "" : $" (after {Compression} decompression)")}.", Path);
        if (eh[4] != 2 || eh[5] != 1)
            throw new LeakToolsException(FailureKind.InvalidData, "UnsupportedCore", $"{Path} is not a 64-bit little-endian ELF file.", Path);
        ushort type = BinaryPrimitives.ReadUInt16LittleEndian(eh.AsSpan(16));
        if (type != ElfCore.ET_CORE)
            throw new LeakToolsException(FailureKind.InvalidData, "NotACore", $"{Path} is an ELF file but not a core (e_type {type}).", Path);
        Machine = BinaryPrimitives.ReadUInt16LittleEndian(eh.AsSpan(18));
        long phoff = (long)BinaryPrimitives.ReadUInt64LittleEndian(eh.AsSpan(32));
        int phentsize = BinaryPrimitives.ReadUInt16LittleEndian(eh.AsSpan(54));
        int phnum = BinaryPrimitives.ReadUInt16LittleEndian(eh.AsSpan(56));
        if (phnum == 0xffff)
        {
            // PN_XNUM: the real count is in section header 0's sh_info.
            long shoff = (long)BinaryPrimitives.ReadUInt64LittleEndian(eh.AsSpan(40));
            byte[] sh = new byte[64];
            if (ReadAt(shoff, sh) == 64) phnum = (int)BinaryPrimitives.ReadUInt32LittleEndian(sh.AsSpan(44));
        }
        if (phentsize < ElfCore.PhdrSize) throw new LeakToolsException(FailureKind.InvalidData, "CorruptCore", $"{Path} has a bad program header size.", Path);
        byte[] ph = new byte[(long)phnum * phentsize];
        if (ReadAt(phoff, ph) < ph.Length)
        {
            Problem = "truncated: the program headers are incomplete";
            Truncated = true;
            return;
        }
        var notes = new List<(long Offset, long Size)>();
        long needed = 0;
        for (int i = 0; i < phnum; i++)
        {
            ReadOnlySpan<byte> p = ph.AsSpan(i * phentsize, ElfCore.PhdrSize);
            uint ptype = BinaryPrimitives.ReadUInt32LittleEndian(p);
            uint flags = BinaryPrimitives.ReadUInt32LittleEndian(p[4..]);
            long offset = (long)BinaryPrimitives.ReadUInt64LittleEndian(p[8..]);
            ulong vaddr = BinaryPrimitives.ReadUInt64LittleEndian(p[16..]);
            long filesz = (long)BinaryPrimitives.ReadUInt64LittleEndian(p[32..]);
            ulong memsz = BinaryPrimitives.ReadUInt64LittleEndian(p[40..]);
            if (ptype == ElfCore.PT_NOTE) notes.Add((offset, filesz));
            else if (ptype == ElfCore.PT_LOAD) Segments.Add(new CoreSegment(vaddr, memsz, offset, filesz, flags));
            needed = Math.Max(needed, offset + filesz);
        }
        foreach (var (offset, size) in notes)
        {
            if (size > 256L << 20) { Problem = "the note segment is implausibly large"; continue; }
            byte[] buf = new byte[size];
            int got = ReadAt(offset, buf);
            if (got < size) { Problem = "truncated: the notes are incomplete"; Truncated = true; }
            ParseNotes(buf.AsSpan(0, got));
        }
        if (Length >= 0 && Length < needed)
        {
            Truncated = true;
            Problem ??= $"truncated: {Length:N0} of {needed:N0} bytes present; memory past that reads as missing";
        }
    }

    private void ParseNotes(ReadOnlySpan<byte> s)
    {
        CoreThread? current = null;
        int pos = 0;
        while (pos + 12 <= s.Length)
        {
            int namesz = (int)BinaryPrimitives.ReadUInt32LittleEndian(s[pos..]);
            int descsz = (int)BinaryPrimitives.ReadUInt32LittleEndian(s[(pos + 4)..]);
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(s[(pos + 8)..]);
            int nameAt = pos + 12;
            int descAt = nameAt + (int)ElfCore.AlignUp(namesz, 4);
            int next = descAt + (int)ElfCore.AlignUp(descsz, 4);
            if (namesz < 0 || descsz < 0 || descAt + descsz > s.Length)
            {
                Problem ??= "corrupt or cut-off note";
                return;
            }
            string owner = Encoding.ASCII.GetString(s.Slice(nameAt, Math.Max(0, namesz - 1)));
            ReadOnlySpan<byte> d = s.Slice(descAt, descsz);
            switch (owner, type)
            {
                case ("CORE", ElfCore.NT_PRSTATUS) when d.Length >= ElfCore.PrstatusRegOffset + UserRegisters.Size:
                    current = new CoreThread
                    {
                        Signal = BinaryPrimitives.ReadInt16LittleEndian(d[12..]),
                        Tid = BinaryPrimitives.ReadInt32LittleEndian(d[32..]),
                        Registers = System.Runtime.InteropServices.MemoryMarshal.Read<UserRegisters>(d.Slice(ElfCore.PrstatusRegOffset, UserRegisters.Size)),
                    };
                    Threads.Add(current);
                    if (Threads.Count == 1 && current.Signal != 0) Signal ??= current.Signal;
                    break;
                case ("CORE", ElfCore.NT_PRFPREG) when current is not null:
                    current.FpRegisters = d.ToArray();
                    break;
                case ("LINUX", ElfCore.NT_X86_XSTATE) when current is not null:
                    current.XState = d.ToArray();
                    break;
                case ("CORE", ElfCore.NT_PRPSINFO) when d.Length >= ElfCore.PrpsinfoSize:
                    Process = new CoreProcessInfo
                    {
                        State = (char)d[1],
                        Uid = BinaryPrimitives.ReadUInt32LittleEndian(d[16..]),
                        Gid = BinaryPrimitives.ReadUInt32LittleEndian(d[20..]),
                        Pid = BinaryPrimitives.ReadInt32LittleEndian(d[24..]),
                        ParentId = BinaryPrimitives.ReadInt32LittleEndian(d[28..]),
                        Name = CString(d.Slice(40, 16)),
                        Arguments = CString(d.Slice(56, 80)).TrimEnd(),
                    };
                    break;
                case ("CORE", ElfCore.NT_SIGINFO) when d.Length >= 4:
                    int signo = BinaryPrimitives.ReadInt32LittleEndian(d);
                    if (signo != 0) Signal = signo;
                    break;
                case ("CORE", ElfCore.NT_AUXV):
                    Auxv = d.ToArray();
                    break;
                case ("CORE", ElfCore.NT_FILE):
                    ParseFileNote(d);
                    break;
                case (ElfCore.LeakToolsNoteName, ElfCore.NT_LEAKTOOLS_INFO):
                    foreach (string line in Encoding.ASCII.GetString(d).Split('\n'))
                    {
                        int eq = line.IndexOf('=');
                        if (eq > 0) LeakToolsInfo[line[..eq]] = line[(eq + 1)..];
                    }
                    break;
            }
            pos = next;
        }
    }

    private void ParseFileNote(ReadOnlySpan<byte> d)
    {
        if (d.Length < 16) return;
        long count = (long)BinaryPrimitives.ReadUInt64LittleEndian(d);
        ulong pageSize = BinaryPrimitives.ReadUInt64LittleEndian(d[8..]);
        if (count < 0 || 16 + count * 24 > d.Length) { Problem ??= "corrupt NT_FILE note"; return; }
        int names = 16 + (int)count * 24;
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<byte> e = d.Slice(16 + i * 24, 24);
            int end = d[names..].IndexOf((byte)0);
            if (end < 0) end = d.Length - names;
            string path = Encoding.UTF8.GetString(d.Slice(names, end));
            names = Math.Min(d.Length, names + end + 1);
            Files.Add(new CoreFileMapping(BinaryPrimitives.ReadUInt64LittleEndian(e), BinaryPrimitives.ReadUInt64LittleEndian(e[8..]),
                BinaryPrimitives.ReadUInt64LittleEndian(e[16..]) * pageSize, path));
        }
    }

    private static string CString(ReadOnlySpan<byte> s)
    {
        int nul = s.IndexOf((byte)0);
        return Encoding.UTF8.GetString(nul < 0 ? s : s[..nul]);
    }

    /// <summary>The PT_LOAD holding <paramref name="address"/>, or null.</summary>
    public CoreSegment? FindSegment(ulong address)
    {
        int lo = 0, hi = Segments.Count - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >> 1;
            CoreSegment s = Segments[mid];
            if (address < s.VirtualAddress) hi = mid - 1;
            else if (address >= s.End) lo = mid + 1;
            else return s;
        }
        return null;
    }

    /// <summary>Reads process memory at <paramref name="address"/> from the core. Returns the bytes
    /// available from the start of the range: stops at an address no segment covers, at memory the
    /// core does not hold (filesz shorter than memsz) or past the end of a truncated file.</summary>
    public int ReadMemory(ulong address, Span<byte> buffer)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            ulong a = address + (ulong)done;
            CoreSegment? s = FindSegment(a);
            if (s is null) break;
            ulong within = a - s.VirtualAddress;
            if ((long)within >= s.FileSize) break;
            int len = (int)Math.Min((ulong)(buffer.Length - done), (ulong)s.FileSize - within);
            int got = ReadAt(s.FileOffset + (long)within, buffer.Slice(done, len));
            done += got;
            if (got < len) break;
        }
        return done;
    }

    public void Dispose()
    {
        _file?.Dispose();
        if (_tempPath is not null) { try { File.Delete(_tempPath); } catch (IOException) { } }
    }
}
