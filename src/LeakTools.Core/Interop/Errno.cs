using System.Runtime.InteropServices;

namespace LeakTools.Core.Interop;

/// <summary>The errno values LeakTools reacts to (x86-64 / generic Linux numbering).</summary>
public static class Errno
{
    public const int EPERM = 1;
    public const int ENOENT = 2;
    public const int ESRCH = 3;
    public const int EINTR = 4;
    public const int EIO = 5;
    public const int EAGAIN = 11;
    public const int ENOMEM = 12;
    public const int EACCES = 13;
    public const int EFAULT = 14;
    public const int EBUSY = 16;
    public const int EEXIST = 17;
    public const int ENOTDIR = 20;
    public const int EINVAL = 22;
    public const int ENOSPC = 28;

    /// <summary>The C library's text for an errno value ("No such process").</summary>
    public static string Describe(int errno) => Marshal.GetPInvokeErrorMessage(errno);
}
