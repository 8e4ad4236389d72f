using System;
using System.IO;
using System.Runtime.InteropServices;

// The benchmarks' baseline: /proc/PID/smaps_rollup read whole with open/read/close into a reused
// buffer, no parsing, no objects, no exceptions — the cheapest possible way. Loaded with Add-Type.
public static unsafe class RawRollup
{
    [DllImport("libc", EntryPoint = "open")] private static extern int Open(byte* path, int flags);
    [DllImport("libc", EntryPoint = "read")] private static extern nint Read(int fd, byte* buf, nuint count);
    [DllImport("libc", EntryPoint = "close")] private static extern int Close(int fd);
    private static readonly byte[] Buffer = new byte[64 * 1024];

    /// <summary>Reads one process's smaps_rollup; returns the bytes read (0 if it cannot be opened).</summary>
    public static long ReadOne(int pid)
    {
        byte* path = stackalloc byte[64];
        string file = "/proc/" + pid + "/smaps_rollup";
        for (int i = 0; i < file.Length; i++) path[i] = (byte)file[i];
        path[file.Length] = 0;
        int fd = Open(path, 0);
        if (fd < 0) return 0;
        long total = 0;
        fixed (byte* b = Buffer)
        {
            nint n;
            while ((n = Read(fd, b, (nuint)Buffer.Length)) > 0) total += n;
        }
        Close(fd);
        return total;
    }

    /// <summary>Reads every process's smaps_rollup; returns the bytes read.</summary>
    public static long ReadAll()
    {
        long total = 0;
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            string name = Path.GetFileName(dir);
            if (name.Length == 0 || name[0] < '0' || name[0] > '9') continue;
            total += ReadOne(int.Parse(name));
        }
        return total;
    }
}
