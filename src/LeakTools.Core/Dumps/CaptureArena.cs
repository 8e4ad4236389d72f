using LeakTools.Core.Interop;

namespace LeakTools.Core.Dumps;

/// <summary>Anonymous memory for copies of the target's memory, faulted in (MAP_POPULATE) before
/// the target is stopped, so the copy while it is frozen is a plain process_vm_readv into memory
/// that is already there. Grows by another chunk if the target's mappings grew meanwhile.</summary>
internal sealed unsafe class CaptureArena : IDisposable
{
    private const long ChunkMax = 1L << 30;
    private readonly List<(nint Base, long Size)> _chunks = new();
    private long _used; // in the last chunk

    public CaptureArena(long bytes)
    {
        if (bytes > 0) AddChunk(bytes);
    }

    public long Reserved => _chunks.Sum(c => c.Size);

    private void AddChunk(long bytes)
    {
        bytes = ElfCore.AlignUp(Math.Max(bytes, 1 << 20), ElfCore.PageSize);
        while (bytes > 0)
        {
            long size = Math.Min(bytes, ChunkMax);
            void* p = LibcFiles.Mmap(null, (nuint)size, LibcFiles.PROT_READ | LibcFiles.PROT_WRITE,
                LibcFiles.MAP_PRIVATE | LibcFiles.MAP_ANONYMOUS | LibcFiles.MAP_POPULATE | LibcFiles.MAP_NORESERVE, -1, 0);
            if ((nint)p == -1)
                throw new LeakToolsException(FailureKind.SystemError, "OutOfMemory", $"Cannot reserve {size >> 20} MiB to copy the target's memory.");
            _chunks.Add(((nint)p, size));
            _used = 0;
            bytes -= size;
        }
    }

    /// <summary>A zeroed block of <paramref name="length"/> bytes valid until Dispose.</summary>
    public byte* Allocate(long length)
    {
        length = ElfCore.AlignUp(length, ElfCore.PageSize);
        if (length > ChunkMax) throw new ArgumentOutOfRangeException(nameof(length));
        if (_chunks.Count == 0 || _chunks[^1].Size - _used < length) AddChunk(Math.Max(length, 64L << 20));
        var (b, _) = _chunks[^1];
        byte* p = (byte*)b + _used;
        _used += length;
        return p;
    }

    public void Dispose()
    {
        foreach (var (b, size) in _chunks) LibcFiles.Munmap((void*)b, (nuint)size);
        _chunks.Clear();
    }
}
