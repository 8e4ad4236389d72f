using Microsoft.Win32.SafeHandles;

namespace LeakTools.Core.Dumps;

/// <summary>A core being written: a hidden temporary file beside the final name, renamed into
/// place only when complete, deleted on any failure — a failed capture never leaves a partial
/// core. Uncompressed output is positional and sparse (all-zero pages are skipped, as the kernel
/// skips absent pages); zstd output is one sequential frame, as systemd-coredump writes it.</summary>
public sealed class CoreOutputFile : IDisposable
{
    private readonly FileStream _file;
    private readonly Stream? _compressor;
    private long _position; // compressed: bytes handed to the compressor so far
    private bool _committed;

    private CoreOutputFile(string finalPath, string tempPath, FileStream file, bool compress)
    {
        FinalPath = finalPath;
        TempPath = tempPath;
        _file = file;
        if (compress) _compressor = new ZstdSharp.CompressionStream(file, 3, 1 << 20, leaveOpen: true);
    }

    public string FinalPath { get; private set; }
    public string TempPath { get; }
    public bool Compressed => _compressor is not null;

    /// <summary>The temporary file's handle (for mapping it).</summary>
    public SafeFileHandle Handle => _file.SafeFileHandle;

    /// <summary>Creates the temporary file, so an unwritable destination fails before anything else happens.</summary>
    public static CoreOutputFile Create(string directory, string fileName, bool compress)
    {
        if (!Directory.Exists(directory))
            throw new LeakToolsException(FailureKind.NotFound, "DestinationNotFound", $"The destination folder {directory} does not exist.", directory);
        string final = Path.Combine(directory, fileName);
        string temp = Path.Combine(directory, $".{fileName}.{Environment.ProcessId}.partial");
        try
        {
            var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.None);
            return new CoreOutputFile(final, temp, fs, compress);
        }
        catch (Exception ex) when (ex is UnauthorizedAccessException or IOException)
        {
            throw new LeakToolsException(FailureKind.AccessDenied, "DestinationNotWritable",
                $"Cannot write a core into {directory}: {ex.Message}", directory, ex);
        }
    }

    /// <summary>Writes <paramref name="data"/> at <paramref name="offset"/>. Compressed output must be written in order.</summary>
    public void Write(long offset, ReadOnlySpan<byte> data)
    {
        try
        {
            if (_compressor is not null)
            {
                if (offset < _position) throw new InvalidOperationException("Compressed cores are written in order.");
                PadTo(offset);
                _compressor.Write(data);
                _position += data.Length;
                return;
            }
            WriteSparse(offset, data);
        }
        catch (IOException ex)
        {
            throw WriteFailure(ex);
        }
    }

    private void PadTo(long offset)
    {
        Span<byte> zeros = stackalloc byte[4096];
        zeros.Clear();
        while (_position < offset)
        {
            int n = (int)Math.Min(zeros.Length, offset - _position);
            _compressor!.Write(zeros[..n]);
            _position += n;
        }
    }

    private void WriteSparse(long offset, ReadOnlySpan<byte> data)
    {
        SafeFileHandle h = _file.SafeFileHandle;
        int page = ElfCore.PageSize;
        int i = 0;
        while (i < data.Length)
        {
            // skip a run of zero pages, then write the following run of non-zero pages in one call
            while (i < data.Length && data.Slice(i, Math.Min(page, data.Length - i)).IndexOfAnyExcept((byte)0) < 0) i += page;
            if (i >= data.Length) break;
            int start = i;
            while (i < data.Length && data.Slice(i, Math.Min(page, data.Length - i)).IndexOfAnyExcept((byte)0) >= 0) i += page;
            int end = Math.Min(i, data.Length);
            RandomAccess.Write(h, data[start..end], offset + start);
        }
    }

    public LeakToolsException WriteFailure(IOException ex)
    {
        string dir = Path.GetDirectoryName(FinalPath) ?? ".";
        bool full = (ex.HResult & 0xffff) == 28 || ex.Message.Contains("space", StringComparison.OrdinalIgnoreCase);
        return full
            ? new LeakToolsException(FailureKind.WriteFailed, "DestinationFull",
                $"The filesystem holding {dir} is full: the core was not written (the partial file was removed). " +
                "Free space there or choose another -Destination.", dir, ex)
            : new LeakToolsException(FailureKind.WriteFailed, "CoreWriteFailed", $"Writing the core to {dir} failed: {ex.Message}", dir, ex);
    }

    /// <summary>Completes the file (sets its length, ends the zstd frame) and renames it into place;
    /// returns the final path (a numbered suffix is added if that name exists already).</summary>
    public string Commit(long totalLength)
    {
        try
        {
            if (_compressor is not null)
            {
                PadTo(totalLength);
                _compressor.Dispose();
            }
            else
            {
                _file.SetLength(totalLength);
            }
            _file.Flush(flushToDisk: false);
            _file.Dispose();
        }
        catch (IOException ex)
        {
            throw WriteFailure(ex);
        }
        string target = FinalPath;
        for (int n = 1; File.Exists(target); n++) target = $"{FinalPath}.{n}";
        File.Move(TempPath, target);
        FinalPath = target;
        _committed = true;
        return target;
    }

    public void Dispose()
    {
        if (_committed) return;
        try { _compressor?.Dispose(); } catch (IOException) { } catch (ObjectDisposedException) { }
        try { _file.Dispose(); } catch (IOException) { }
        try { File.Delete(TempPath); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
