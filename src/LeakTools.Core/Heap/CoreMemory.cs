using System.Runtime.InteropServices;
using LeakTools.Core.Dumps;
using LeakTools.Core.Interop;

namespace LeakTools.Core.Heap;

/// <summary>The memory of a core, read in place: the (uncompressed) core file is mapped read-only,
/// so the heap walk and the pointer scan touch the page cache without copying a byte. An address
/// is "present" when a PT_LOAD covers it with file bytes that the file really holds (a truncated
/// core or a segment the kernel left out by coredump_filter reads as absent, never as zeros).</summary>
internal sealed unsafe class CoreMemory : IDisposable
{
    private readonly CoreSegment[] _segments;
    private readonly ulong[] _starts;
    private readonly long _fileLength;
    private byte* _base;
    // The segment of the last lookup: most reads follow the one before.
    private ulong _lo, _hi;
    private byte* _loPointer;

    public CoreMemory(CoreFile core)
    {
        Core = core;
        _segments = core.Segments.OrderBy(s => s.VirtualAddress).ToArray();
        _starts = _segments.Select(s => s.VirtualAddress).ToArray();
        _fileLength = core.Length;
        var handle = core.DataHandle ?? throw new InvalidOperationException("The core was opened without memory access.");
        if (_fileLength > 0)
        {
            void* p = LibcFiles.Mmap(null, (nuint)_fileLength, LibcFiles.PROT_READ, LibcFiles.MAP_PRIVATE, (int)handle.DangerousGetHandle(), 0);
            if ((nint)p == -1)
                throw new LeakToolsException(FailureKind.SystemError, "MapFailed", $"Cannot map the core {core.Path}: {Errno.Describe(Marshal.GetLastPInvokeError())}.", core.Path);
            _base = (byte*)p;
        }
    }

    public CoreFile Core { get; }

    /// <summary>PT_LOAD segments by address.</summary>
    public IReadOnlyList<CoreSegment> Segments => _segments;

    /// <summary>Bytes of <paramref name="s"/> the file holds, from its start.</summary>
    public long PresentBytes(CoreSegment s) =>
        _base is null ? 0 : Math.Max(0, Math.Min(s.FileSize, _fileLength - s.FileOffset));

    /// <summary>The segment holding <paramref name="address"/>, or null.</summary>
    public CoreSegment? SegmentAt(ulong address)
    {
        int i = IndexAt(address);
        return i < 0 ? null : _segments[i];
    }

    private int IndexAt(ulong address)
    {
        int lo = 0, hi = _starts.Length - 1, found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (_starts[mid] <= address) { found = mid; lo = mid + 1; }
            else hi = mid - 1;
        }
        return found >= 0 && address < _segments[found].End ? found : -1;
    }

    /// <summary>A pointer to the bytes at <paramref name="address"/> and how many follow it in the
    /// same segment; null (and 0) when the address is not present.</summary>
    public byte* Pointer(ulong address, out long available)
    {
        if (address >= _lo && address < _hi)
        {
            available = (long)(_hi - address);
            return _loPointer + (address - _lo);
        }
        int i = IndexAt(address);
        if (i < 0)
        {
            available = 0;
            return null;
        }
        CoreSegment s = _segments[i];
        long present = PresentBytes(s);
        ulong within = address - s.VirtualAddress;
        if ((long)within >= present)
        {
            available = 0;
            return null;
        }
        _lo = s.VirtualAddress;
        _hi = s.VirtualAddress + (ulong)present;
        _loPointer = _base + s.FileOffset;
        available = present - (long)within;
        return _base + s.FileOffset + (long)within;
    }

    /// <summary>True when all <paramref name="length"/> bytes at <paramref name="address"/> are present.</summary>
    public bool IsPresent(ulong address, long length)
    {
        while (length > 0)
        {
            if (Pointer(address, out long available) is null) return false;
            long step = Math.Min(available, length);
            address += (ulong)step;
            length -= step;
        }
        return true;
    }

    public bool TryU64(ulong address, out ulong value)
    {
        byte* p = Pointer(address, out long available);
        if (p is not null && available >= 8)
        {
            value = *(ulong*)p;
            return true;
        }
        return TryRead(address, out value); // across two segments, or absent
    }

    public bool TryU32(ulong address, out uint value) => TryRead(address, out value);

    /// <summary>A value of <typeparamref name="T"/> at <paramref name="address"/>, when all its bytes are present.</summary>
    public bool TryRead<T>(ulong address, out T value) where T : unmanaged
    {
        T v = default;
        var bytes = new Span<byte>(&v, sizeof(T));
        bool ok = Read(address, bytes) == bytes.Length;
        value = ok ? v : default;
        return ok;
    }

    /// <summary>Copies what is present from <paramref name="address"/>; returns the count.</summary>
    public int Read(ulong address, Span<byte> buffer)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            byte* p = Pointer(address + (ulong)done, out long available);
            if (p is null) break;
            int n = (int)Math.Min(available, buffer.Length - done);
            new ReadOnlySpan<byte>(p, n).CopyTo(buffer[done..]);
            done += n;
        }
        return done;
    }

    public void Dispose()
    {
        if (_base is null) return;
        LibcFiles.Munmap(_base, (nuint)_fileLength);
        _base = null;
        _lo = _hi = 0;
    }
}
