using System.IO.Compression;
using System.Text;

namespace LeakTools.Core.Reports;

/// <summary>Reads a valgrind report file of either format: --xml=yes output or a text log (also
/// gzip-compressed), told apart by content, not by name.</summary>
public static class ValgrindLogReader
{
    /// <summary>The reports in <paramref name="path"/>: one for an XML file, one per process for a text log.</summary>
    public static List<ValgrindReport> Read(string path, ModuleLoadMap? loads = null)
    {
        Stream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1 << 16);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new LeakToolsException(FailureKind.NotFound, "PathNotFound", $"Cannot find the valgrind report '{path}': it does not exist.", path, e);
        }
        catch (UnauthorizedAccessException e) when (Directory.Exists(path))
        {
            throw new LeakToolsException(FailureKind.InvalidData, "NotValgrindReport", $"'{path}' is a directory, not a valgrind report.", path, e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new LeakToolsException(FailureKind.AccessDenied, "AccessDenied", $"Access to the valgrind report '{path}' is denied.", path, e);
        }
        catch (IOException e)
        {
            throw new LeakToolsException(FailureKind.SystemError, "ReadFailed", $"Reading the valgrind report '{path}' failed: {e.Message}", path, e);
        }

        using (stream)
        {
            try
            {
                return Read(stream, path, loads);
            }
            catch (IOException e)
            {
                throw new LeakToolsException(FailureKind.SystemError, "ReadFailed", $"Reading the valgrind report '{path}' failed: {e.Message}", path, e);
            }
            catch (InvalidDataException e)
            {
                throw new LeakToolsException(FailureKind.InvalidData, "NotValgrindReport", $"'{path}' is not a valgrind report: {e.Message}", path, e);
            }
        }
    }

    public static List<ValgrindReport> Read(Stream stream, string? path, ModuleLoadMap? loads = null)
    {
        Stream buffered = stream;
        if (!stream.CanSeek)
        {
            buffered = new MemoryStream();
            stream.CopyTo(buffered);
            buffered.Position = 0;
        }
        long start = buffered.Position;
        int b0 = buffered.ReadByte(), b1 = buffered.ReadByte();
        buffered.Position = start;
        if (b0 == 0x1f && b1 == 0x8b)
        {
            using var gz = new GZipStream(buffered, CompressionMode.Decompress, leaveOpen: true);
            var copy = new MemoryStream();
            gz.CopyTo(copy);
            copy.Position = 0;
            return Read(copy, path, loads);
        }
        int first = FirstSignificantChar(buffered, out bool binary);
        if (binary)
            throw new LeakToolsException(FailureKind.InvalidData, "NotValgrindReport", $"{path ?? "The input"} is not a valgrind report: it is a binary file.", path);
        if (first == '<')
            return new List<ValgrindReport> { ValgrindXmlParser.Parse(buffered, path, loads) };
        using var reader = new StreamReader(buffered, Encoding.UTF8, detectEncodingFromByteOrderMarks: true, 1 << 16, leaveOpen: true);
        return ValgrindTextParser.Parse(reader, path);
    }

    /// <summary>The first non-blank byte; <paramref name="binary"/> when the first 4 KiB hold a NUL (an ELF, a core).</summary>
    private static int FirstSignificantChar(Stream s, out bool binary)
    {
        long start = s.Position;
        try
        {
            var head = new byte[4096];
            int n = s.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
            binary = Array.IndexOf(head, (byte)0, 0, n) >= 0;
            foreach (byte b in head.AsSpan(0, n))
            {
                if (b is 0xEF or 0xBB or 0xBF || char.IsWhiteSpace((char)b)) continue;
                return b;
            }
            return -1;
        }
        finally
        {
            s.Position = start;
        }
    }
}
