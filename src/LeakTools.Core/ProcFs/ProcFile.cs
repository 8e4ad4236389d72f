using System.Runtime.InteropServices;
using System.Text;
using LeakTools.Core.Interop;

namespace LeakTools.Core.ProcFs;

/// <summary>Reads whole /proc files with open/read/close directly: /proc files report size 0,
/// and going through FileStream costs more than the kernel's own work for small files. Keeps the
/// exact errno so callers can tell "exited" from "denied".</summary>
public static unsafe class ProcFile
{
    [ThreadStatic] private static byte[]? t_buffer;

    /// <summary>Reads <paramref name="path"/> into a per-thread buffer. The returned span is valid
    /// until the next call on the same thread. Returns the errno (0 on success).</summary>
    public static int TryRead(string path, out ReadOnlySpan<byte> content)
    {
        byte[] buffer = t_buffer ??= new byte[16 * 1024];
        int errno = ReadInto(path, ref buffer, out int length);
        t_buffer = buffer;
        content = errno == 0 ? new ReadOnlySpan<byte>(buffer, 0, length) : default;
        return errno;
    }

    /// <summary>Reads a whole file into a fresh array, or throws the errno-typed exception for pid.</summary>
    public static byte[] ReadAllBytes(string path, int pid)
    {
        int errno = TryRead(path, out ReadOnlySpan<byte> content);
        if (errno != 0) throw ProcErrors.FromErrno(errno, pid, path);
        return content.ToArray();
    }

    /// <summary>Reads a file as text (UTF-8), or returns null with the errno.</summary>
    public static string? TryReadText(string path, out int errno)
    {
        errno = TryRead(path, out ReadOnlySpan<byte> content);
        return errno == 0 ? Encoding.UTF8.GetString(content) : null;
    }

    private static int ReadInto(string path, ref byte[] buffer, out int length)
    {
        length = 0;
        int byteCount = Encoding.UTF8.GetMaxByteCount(path.Length) + 1;
        Span<byte> pathBytes = byteCount <= 512 ? stackalloc byte[byteCount] : new byte[byteCount];
        int n = Encoding.UTF8.GetBytes(path, pathBytes);
        pathBytes[n] = 0;

        int fd;
        fixed (byte* p = pathBytes)
        {
            do { fd = Libc.Open(p, Libc.O_RDONLY | Libc.O_CLOEXEC); }
            while (fd < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR);
        }
        if (fd < 0) return Marshal.GetLastPInvokeError();

        try
        {
            while (true)
            {
                if (length == buffer.Length) Array.Resize(ref buffer, buffer.Length * 2);
                nint got;
                fixed (byte* b = &buffer[length])
                {
                    got = Libc.Read(fd, b, (nuint)(buffer.Length - length));
                }
                if (got < 0)
                {
                    int err = Marshal.GetLastPInvokeError();
                    if (err == Errno.EINTR) continue;
                    return err;
                }
                if (got == 0) return 0;
                length += (int)got;
            }
        }
        finally
        {
            Libc.Close(fd);
        }
    }
}
