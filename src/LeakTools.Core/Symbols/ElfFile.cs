using System.IO.Compression;
using System.IO.MemoryMappedFiles;
using System.Text;

namespace LeakTools.Core.Symbols;

/// <summary>One section header of an ELF file.</summary>
public sealed record ElfSection(int Index, string Name, uint Type, ulong Flags, ulong Address, ulong Offset, ulong Size, uint Link, uint Info, ulong EntrySize)
{
    public const uint SHT_NOBITS = 8;
    public const uint SHT_SYMTAB = 2;
    public const uint SHT_DYNSYM = 11;
    public const uint SHT_NOTE = 7;
    public const uint SHT_RELA = 4;
    public const ulong SHF_ALLOC = 0x2;
    public const ulong SHF_EXECINSTR = 0x4;
    public const ulong SHF_COMPRESSED = 0x800;

    public bool IsExecutable => (Flags & SHF_EXECINSTR) != 0;
}

/// <summary>One program header (segment) of an ELF file.</summary>
public readonly record struct ElfSegment(uint Type, uint Flags, ulong Offset, ulong VirtualAddress, ulong FileSize, ulong MemorySize)
{
    public const uint PT_LOAD = 1;
    public const uint PT_NOTE = 4;
}

/// <summary>A 64-bit little-endian ELF file (x86-64, aarch64...) read through a read-only memory
/// map, or an image held in memory (MiniDebugInfo, the vdso). Reads headers, sections, segments,
/// the GNU build-id and .gnu_debuglink; section contents come out decompressed
/// (SHF_COMPRESSED, zlib or zstd) and are cached. Every offset is checked against the file size:
/// a truncated or corrupt file gives a clear <see cref="LeakToolsException"/>, never a read outside it.</summary>
public sealed unsafe class ElfFile : IDisposable
{
    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte[]? _array;
    private readonly byte* _base;
    private readonly long _length;
    private readonly Dictionary<int, ByteBlock> _sectionData = new();
    private bool _disposed;

    public const ushort ET_EXEC = 2;
    public const ushort ET_DYN = 3;

    private ElfFile(string path, MemoryMappedFile? map, MemoryMappedViewAccessor? view, byte[]? array, byte* basePointer, long length)
    {
        Path = path;
        _map = map;
        _view = view;
        _array = array;
        _base = basePointer;
        _length = length;
    }

    /// <summary>Path the file was opened from (or a name for in-memory images such as "[vdso]").</summary>
    public string Path { get; }

    public ushort Type { get; private set; }

    public ushort Machine { get; private set; }

    public IReadOnlyList<ElfSection> Sections { get; private set; } = Array.Empty<ElfSection>();

    public IReadOnlyList<ElfSegment> Segments { get; private set; } = Array.Empty<ElfSegment>();

    /// <summary>The GNU build-id as lowercase hex, or null.</summary>
    public string? BuildId { get; private set; }

    /// <summary>The file name in .gnu_debuglink, or null.</summary>
    public string? DebugLink { get; private set; }

    /// <summary>The CRC32 of the debug file that .gnu_debuglink names.</summary>
    public uint DebugLinkCrc { get; private set; }

    public long Length => _length;

    /// <summary>Bytes of decompressed debug sections held in native memory by all open files
    /// (outside the GC heap; for memory figures).</summary>
    public static long DecompressedBytesInUse => ByteBlock.NativeBytesInUse;

    /// <summary>True when the file carries DWARF (a .debug_info with contents).</summary>
    public bool HasDwarf => FindSection(".debug_info") is { Type: not ElfSection.SHT_NOBITS, Size: > 0 };

    /// <summary>Opens and parses an ELF file. Throws <see cref="LeakToolsException"/>: FileNotFound,
    /// AccessDenied, NotAnElfFile, UnsupportedElf, CorruptElf.</summary>
    public static ElfFile Open(string path, string? displayPath = null)
    {
        string shown = displayPath ?? path;
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.None);
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new LeakToolsException(FailureKind.NotFound, "FileNotFound", $"Cannot find the file '{shown}'.", shown, ex);
        }
        catch (UnauthorizedAccessException ex)
        {
            throw new LeakToolsException(FailureKind.AccessDenied, "AccessDenied", $"Access to '{shown}' is denied.", shown, ex);
        }
        catch (IOException ex)
        {
            throw new LeakToolsException(FailureKind.SystemError, "FileReadFailed", $"Cannot read '{shown}': {ex.Message}", shown, ex);
        }

        using (stream)
        {
            long length = stream.Length;
            if (length < 64) throw NotElf(shown, "it is shorter than an ELF header");
            MemoryMappedFile map;
            MemoryMappedViewAccessor view;
            try
            {
                map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: true);
                view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new LeakToolsException(FailureKind.SystemError, "FileReadFailed", $"Cannot map '{shown}': {ex.Message}", shown, ex);
            }
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            p += view.PointerOffset;
            return ParseOrDispose(new ElfFile(shown, map, view, null, p, length));
        }
    }

    /// <summary>Parses an ELF image held in memory (MiniDebugInfo, a vdso read from a process).</summary>
    public static ElfFile FromBytes(byte[] image, string name)
    {
        if (image.Length < 64) throw NotElf(name, "it is shorter than an ELF header");
        var handle = System.Runtime.InteropServices.GCHandle.Alloc(image, System.Runtime.InteropServices.GCHandleType.Pinned);
        // Pinned for the file's life (released in Dispose); images are small.
        return ParseOrDispose(new ElfFile(name, null, null, image, (byte*)handle.AddrOfPinnedObject(), image.Length) { _pin = handle });
    }

    private static ElfFile ParseOrDispose(ElfFile file)
    {
        try
        {
            file.Parse();
            return file;
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private System.Runtime.InteropServices.GCHandle _pin;

    /// <summary>True when the bytes start with the ELF magic.</summary>
    public static bool HasElfMagic(ReadOnlySpan<byte> head) =>
        head.Length >= 4 && head[0] == 0x7f && head[1] == (byte)'E' && head[2] == (byte)'L' && head[3] == (byte)'F';

    private static LeakToolsException NotElf(string path, string why) =>
        new(FailureKind.InvalidData, "NotAnElfFile", $"'{path}' is not an ELF file: {why}.", path);

    private LeakToolsException Corrupt(string why) =>
        new(FailureKind.InvalidData, "CorruptElf", $"'{Path}' is a corrupt or truncated ELF file: {why}.", Path);

    /// <summary>Bytes [offset, offset+count) of the file; throws CorruptElf when outside it.</summary>
    internal ReadOnlySpan<byte> Bytes(ulong offset, ulong count)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (offset > (ulong)_length || count > (ulong)_length - offset)
            throw Corrupt($"0x{count:x} bytes at offset 0x{offset:x} reach past the end of the file (0x{_length:x} bytes)");
        if (count > int.MaxValue) throw Corrupt($"a region of 0x{count:x} bytes is too large");
        return new ReadOnlySpan<byte>(_base + offset, (int)count);
    }

    private void Parse()
    {
        ReadOnlySpan<byte> h = Bytes(0, 64);
        if (!HasElfMagic(h)) throw NotElf(Path, "it does not start with the ELF magic bytes");
        if (h[4] != 2)
            throw new LeakToolsException(FailureKind.NotSupported, "UnsupportedElf", $"'{Path}' is a 32-bit ELF file; LeakTools reads 64-bit ELF only.", Path);
        if (h[5] != 1)
            throw new LeakToolsException(FailureKind.NotSupported, "UnsupportedElf", $"'{Path}' is a big-endian ELF file; LeakTools reads little-endian ELF only.", Path);
        var r = new SpanReader(h, 16);
        Type = r.U16();
        Machine = r.U16();
        r.U32();
        r.U64();
        ulong phoff = r.U64();
        ulong shoff = r.U64();
        r.U32();
        r.U16();
        ushort phentsize = r.U16();
        uint phnum = r.U16();
        ushort shentsize = r.U16();
        uint shnum = r.U16();
        uint shstrndx = r.U16();

        // Extended numbering: the real counts live in section 0.
        if (shoff != 0 && (shnum == 0 || shstrndx == 0xffff || phnum == 0xffff))
        {
            if (shentsize < 64) throw Corrupt("section headers are smaller than 64 bytes");
            var s0 = new SpanReader(Bytes(shoff, 64), 32);
            ulong size0 = s0.U64();
            uint link0 = s0.U32();
            uint info0 = s0.U32();
            if (shnum == 0) shnum = size0 > 65536 * 16 ? throw Corrupt("too many sections") : (uint)size0;
            if (shstrndx == 0xffff) shstrndx = link0;
            if (phnum == 0xffff) phnum = info0;
        }

        var segments = new List<ElfSegment>();
        if (phoff != 0 && phnum > 0)
        {
            if (phentsize < 56) throw Corrupt("program headers are smaller than 56 bytes");
            if (phnum > 65535) throw Corrupt("too many program headers");
            ReadOnlySpan<byte> table = Bytes(phoff, (ulong)phnum * phentsize);
            for (int i = 0; i < phnum; i++)
            {
                var p = new SpanReader(table.Slice(i * phentsize, 56));
                uint type = p.U32();
                uint flags = p.U32();
                ulong offset = p.U64();
                ulong vaddr = p.U64();
                p.U64();
                ulong filesz = p.U64();
                ulong memsz = p.U64();
                segments.Add(new ElfSegment(type, flags, offset, vaddr, filesz, memsz));
            }
        }
        Segments = segments;

        var sections = new List<ElfSection>();
        if (shoff != 0 && shnum > 0)
        {
            if (shentsize < 64) throw Corrupt("section headers are smaller than 64 bytes");
            ReadOnlySpan<byte> table = Bytes(shoff, (ulong)shnum * shentsize);
            var raw = new (uint Name, uint Type, ulong Flags, ulong Addr, ulong Offset, ulong Size, uint Link, uint Info, ulong EntSize)[shnum];
            for (int i = 0; i < shnum; i++)
            {
                var s = new SpanReader(table.Slice(i * shentsize, 64));
                raw[i] = (s.U32(), s.U32(), s.U64(), s.U64(), s.U64(), s.U64(), s.U32(), s.U32(), 0);
                s.U64();
                raw[i].EntSize = s.U64();
            }
            ReadOnlySpan<byte> names = default;
            if (shstrndx < shnum && raw[shstrndx].Type != ElfSection.SHT_NOBITS)
            {
                var sh = raw[shstrndx];
                names = Bytes(sh.Offset, sh.Size);
            }
            for (int i = 0; i < shnum; i++)
            {
                var s = raw[i];
                string name = s.Name < (uint)names.Length ? SpanReader.StringAt(names, s.Name) : "";
                sections.Add(new ElfSection(i, name, s.Type, s.Flags, s.Addr, s.Offset, s.Size, s.Link, s.Info, s.EntSize));
            }
        }
        Sections = sections;
        ReadNotes();
        ReadDebugLink();
    }

    private void ReadNotes()
    {
        foreach (ElfSection s in Sections)
        {
            if (s.Type == ElfSection.SHT_NOTE && TryBuildId(Bytes(s.Offset, s.Size))) return;
        }
        foreach (ElfSegment p in Segments)
        {
            if (p.Type == ElfSegment.PT_NOTE && p.Offset + p.FileSize <= (ulong)_length && TryBuildId(Bytes(p.Offset, p.FileSize))) return;
        }
    }

    private bool TryBuildId(ReadOnlySpan<byte> notes)
    {
        var r = new SpanReader(notes);
        while (r.Remaining >= 12)
        {
            uint namesz = r.U32();
            uint descsz = r.U32();
            uint type = r.U32();
            if (namesz > (uint)r.Remaining) return false;
            ReadOnlySpan<byte> name = r.Bytes((int)namesz);
            r.Skip((ulong)((4 - (namesz & 3)) & 3) > (ulong)r.Remaining ? (ulong)r.Remaining : (ulong)((4 - (namesz & 3)) & 3));
            if (descsz > (uint)r.Remaining) return false;
            ReadOnlySpan<byte> desc = r.Bytes((int)descsz);
            uint pad = (4 - (descsz & 3)) & 3;
            r.Skip(pad > (uint)r.Remaining ? (ulong)r.Remaining : pad);
            if (type == 3 && namesz == 4 && name.SequenceEqual("GNU\0"u8) && descsz is > 0 and <= 64)
            {
                BuildId = Convert.ToHexString(desc).ToLowerInvariant();
                return true;
            }
        }
        return false;
    }

    private void ReadDebugLink()
    {
        ElfSection? s = FindSection(".gnu_debuglink");
        if (s is null || s.Type == ElfSection.SHT_NOBITS) return;
        ReadOnlySpan<byte> data = Bytes(s.Offset, s.Size);
        int nul = data.IndexOf((byte)0);
        if (nul <= 0) return;
        int crcAt = (nul + 4) & ~3;
        if (crcAt + 4 > data.Length) return;
        DebugLink = Encoding.UTF8.GetString(data[..nul]);
        DebugLinkCrc = BitConverter.ToUInt32(data.Slice(crcAt, 4));
    }

    public ElfSection? FindSection(string name)
    {
        foreach (ElfSection s in Sections)
        {
            if (s.Name == name) return s;
        }
        return null;
    }

    /// <summary>A section's contents, decompressed if SHF_COMPRESSED; empty for NOBITS. Cached.</summary>
    internal ByteBlock SectionData(ElfSection? section)
    {
        if (section is null || section.Type == ElfSection.SHT_NOBITS || section.Size == 0) return ByteBlock.Empty;
        lock (_sectionData)
        {
            if (_sectionData.TryGetValue(section.Index, out ByteBlock cached)) return cached;
        }
        ByteBlock data;
        if ((section.Flags & ElfSection.SHF_COMPRESSED) != 0)
        {
            data = Decompress(section); // outside the lock: sections decompress in parallel
        }
        else
        {
            ReadOnlySpan<byte> span = Bytes(section.Offset, section.Size);
            data = new ByteBlock(_base + section.Offset, span.Length);
        }
        lock (_sectionData)
        {
            if (_sectionData.TryGetValue(section.Index, out ByteBlock raced))
            {
                data.Free();
                return raced;
            }
            _sectionData[section.Index] = data;
            return data;
        }
    }

    /// <summary>Decompresses several sections at once (module open: the DWARF sections of a big
    /// debug file), so a 2-core machine spends half the wall time on it.</summary>
    internal void Preload(IEnumerable<ElfSection?> sections)
    {
        var compressed = sections.Where(s => s is not null && (s.Flags & ElfSection.SHF_COMPRESSED) != 0 && s.Type != ElfSection.SHT_NOBITS && s.Size > 0).ToList();
        if (compressed.Count < 2) return;
        Parallel.ForEach(compressed.OrderByDescending(s => s!.Size), s =>
        {
            try
            {
                SectionData(s);
            }
            catch (Exception ex) when (ex is LeakToolsException or BadFormatException)
            {
                // reported when the section is asked for
            }
        });
    }

    /// <summary>Raw bytes of a section (not decompressed).</summary>
    internal ReadOnlySpan<byte> RawSection(ElfSection section) =>
        section.Type == ElfSection.SHT_NOBITS ? default : Bytes(section.Offset, section.Size);

    /// <summary>Decompresses into native memory (freed in Dispose): megabytes of DWARF stay out of
    /// the GC heap, so opening a big debug file does not trigger full collections.</summary>
    private ByteBlock Decompress(ElfSection section)
    {
        ReadOnlySpan<byte> raw = Bytes(section.Offset, section.Size);
        if (raw.Length < 24) throw Corrupt($"compressed section {section.Name} is shorter than its header");
        var r = new SpanReader(raw);
        uint type = r.U32();
        r.U32();
        ulong size = r.U64();
        r.U64();
        ReadOnlySpan<byte> payload = raw[24..];
        // zlib and zstd expand at most ~1000x; anything claiming more is corrupt, not a bomb to feed.
        if (size > 1UL << 30 || size > (ulong)payload.Length * 1100 + 4096)
            throw Corrupt($"section {section.Name} claims {size} decompressed bytes from {payload.Length}");
        var block = ByteBlock.AllocateNative((int)size);
        Span<byte> output = block.WritableSpan;
        try
        {
            int written;
            if (type == 1)
            {
                fixed (byte* p = payload)
                {
                    using var input = new UnmanagedMemoryStream(p, payload.Length);
                    using var z = new ZLibStream(input, CompressionMode.Decompress);
                    written = 0;
                    int n;
                    while (written < output.Length && (n = z.Read(output[written..])) > 0) written += n;
                }
            }
            else if (type == 2)
            {
                using var zstd = new ZstdSharp.Decompressor();
                written = zstd.Unwrap(payload, output);
            }
            else
            {
                throw Corrupt($"section {section.Name} uses unknown compression type {type}");
            }
            if (written != output.Length) throw Corrupt($"section {section.Name} decompressed to {written} bytes, not {size}");
        }
        catch (Exception ex) when (ex is InvalidDataException or IOException or ZstdSharp.ZstdException or ArgumentException or LeakToolsException)
        {
            block.Free();
            throw ex as LeakToolsException ?? Corrupt($"section {section.Name} does not decompress ({ex.Message})");
        }
        return block;
    }

    /// <summary>Converts a file offset (from /proc/PID/maps or a core's NT_FILE) to the virtual
    /// address the ELF file gives those bytes, through the PT_LOAD segment holding them.</summary>
    public bool TryFileOffsetToAddress(ulong fileOffset, out ulong address)
    {
        foreach (ElfSegment p in Segments)
        {
            if (p.Type == ElfSegment.PT_LOAD && fileOffset >= p.Offset && fileOffset - p.Offset < Math.Max(p.FileSize, p.MemorySize))
            {
                address = p.VirtualAddress + (fileOffset - p.Offset);
                return true;
            }
        }
        address = 0;
        return false;
    }

    /// <summary>The file offset of the first PT_LOAD segment (where a mapping at file offset 0 starts).</summary>
    public bool TryFirstLoad(out ElfSegment segment)
    {
        foreach (ElfSegment p in Segments)
        {
            if (p.Type == ElfSegment.PT_LOAD)
            {
                segment = p;
                return true;
            }
        }
        segment = default;
        return false;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
        if (_pin.IsAllocated) _pin.Free();
        lock (_sectionData)
        {
            foreach (ByteBlock block in _sectionData.Values) block.Free();
            _sectionData.Clear();
        }
    }
}
