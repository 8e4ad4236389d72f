using System.Runtime.InteropServices;

namespace LeakTools.Core.Interop;

/// <summary>mmap for capture buffers, statvfs for free space, getxattr for systemd-coredump's metadata.</summary>
internal static unsafe partial class LibcFiles
{
    private const string Lib = "libc";

    public const int PROT_READ = 1, PROT_WRITE = 2;
    public const int MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20, MAP_NORESERVE = 0x4000, MAP_POPULATE = 0x8000;

    [LibraryImport(Lib, EntryPoint = "mmap", SetLastError = true)]
    public static partial void* Mmap(void* addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport(Lib, EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(void* addr, nuint length);

    [LibraryImport(Lib, EntryPoint = "statvfs", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int StatVfs(string path, StatVfsBuf* buf);

    [LibraryImport(Lib, EntryPoint = "getxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint GetXattr(string path, string name, byte* value, nuint size);

    [LibraryImport(Lib, EntryPoint = "setxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int SetXattr(string path, string name, byte* value, nuint size, int flags);

    [StructLayout(LayoutKind.Sequential)]
    public struct StatVfsBuf
    {
        public ulong f_bsize, f_frsize, f_blocks, f_bfree, f_bavail, f_files, f_ffree, f_favail, f_fsid, f_flag, f_namemax;
        public fixed int __spare[6];
    }

    /// <summary>Bytes an unprivileged writer may still use on the filesystem holding <paramref name="path"/>, or null.</summary>
    public static long? FreeBytes(string path)
    {
        StatVfsBuf b;
        return StatVfs(path, &b) == 0 ? (long)(b.f_bavail * b.f_frsize) : null;
    }

    /// <summary>An extended attribute as text, or null.</summary>
    public static string? ReadXattr(string path, string name)
    {
        byte* buf = stackalloc byte[512];
        nint n = GetXattr(path, name, buf, 512);
        return n < 0 ? null : System.Text.Encoding.UTF8.GetString(buf, (int)n).TrimEnd('\0');
    }

    public static bool WriteXattr(string path, string name, string value)
    {
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(value);
        fixed (byte* p = bytes) return SetXattr(path, name, p, (nuint)bytes.Length, 0) == 0;
    }
}

/// <summary>fallocate and madvise for cores written through a shared file mapping.</summary>
internal static unsafe partial class LibcMapping
{
    public const int MAP_SHARED = 1;
    public const int FALLOC_FL_KEEP_SIZE = 1, FALLOC_FL_PUNCH_HOLE = 2;
    public const int MADV_POPULATE_WRITE = 23;

    [LibraryImport("libc", EntryPoint = "fallocate", SetLastError = true)]
    public static partial int Fallocate(int fd, int mode, long offset, long length);

    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    public static partial int Madvise(void* addr, nuint length, int advice);
}
