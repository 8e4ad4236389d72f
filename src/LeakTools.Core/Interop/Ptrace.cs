using System.Runtime.InteropServices;

namespace LeakTools.Core.Interop;

/// <summary>ptrace(2), waitpid(2), process_vm_readv/writev(2), tgkill and prlimit(2), x86-64 numbering.
/// Every ptrace request of a session must come from the one thread that seized the tracee
/// (see <see cref="PtraceThread"/>); process_vm_readv/writev work from any thread.</summary>
internal static unsafe partial class Ptrace
{
    private const string Lib = "libc";

    public const int PTRACE_PEEKDATA = 2;
    public const int PTRACE_POKEDATA = 5;
    public const int PTRACE_CONT = 7;
    public const int PTRACE_SINGLESTEP = 9;
    public const int PTRACE_GETREGS = 12;
    public const int PTRACE_SETREGS = 13;
    public const int PTRACE_GETFPREGS = 14;
    public const int PTRACE_SETFPREGS = 15;
    public const int PTRACE_DETACH = 17;
    public const int PTRACE_SETOPTIONS = 0x4200;
    public const int PTRACE_GETEVENTMSG = 0x4201;
    public const int PTRACE_GETSIGINFO = 0x4202;
    public const int PTRACE_GETREGSET = 0x4204;
    public const int PTRACE_SETREGSET = 0x4205;
    public const int PTRACE_SEIZE = 0x4206;
    public const int PTRACE_INTERRUPT = 0x4207;
    public const int PTRACE_LISTEN = 0x4208;

    public const int PTRACE_O_TRACESYSGOOD = 1;
    public const int PTRACE_O_TRACEFORK = 2;
    public const int PTRACE_O_TRACEVFORK = 4;
    public const int PTRACE_O_TRACECLONE = 8;
    public const int PTRACE_O_TRACEEXEC = 0x10;
    public const int PTRACE_O_TRACEEXIT = 0x40;
    public const int PTRACE_O_EXITKILL = 0x100000;

    public const int PTRACE_EVENT_FORK = 1;
    public const int PTRACE_EVENT_VFORK = 2;
    public const int PTRACE_EVENT_CLONE = 3;
    public const int PTRACE_EVENT_EXEC = 4;
    public const int PTRACE_EVENT_EXIT = 6;
    public const int PTRACE_EVENT_STOP = 128;

    public const int NT_PRSTATUS = 1;
    public const int NT_PRFPREG = 2;
    public const int NT_X86_XSTATE = 0x202;

    public const int __WALL = 0x40000000;
    public const int WNOHANG = 1;

    public const int RLIMIT_CORE = 4;
    public const ulong RLIM_INFINITY = ulong.MaxValue;

    [LibraryImport(Lib, EntryPoint = "ptrace", SetLastError = true)]
    public static partial long Call(long request, int pid, nint addr, nint data);

    [LibraryImport(Lib, EntryPoint = "waitpid", SetLastError = true)]
    public static partial int WaitPid(int pid, int* status, int options);

    [LibraryImport(Lib, EntryPoint = "process_vm_readv", SetLastError = true)]
    public static partial nint ProcessVmReadv(int pid, IoVec* local, nuint liovcnt, IoVec* remote, nuint riovcnt, nuint flags);

    [LibraryImport(Lib, EntryPoint = "process_vm_writev", SetLastError = true)]
    public static partial nint ProcessVmWritev(int pid, IoVec* local, nuint liovcnt, IoVec* remote, nuint riovcnt, nuint flags);

    [LibraryImport(Lib, EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall3(long number, long a, long b, long c);

    /// <summary>tgkill(2) (through syscall(2): glibc before 2.30 has no wrapper).</summary>
    public static int Tgkill(int pid, int tid, int signal) => (int)Syscall3(234, pid, tid, signal);

    [LibraryImport(Lib, EntryPoint = "prlimit", SetLastError = true)]
    public static partial int Prlimit(int pid, int resource, RLimit* newLimit, RLimit* oldLimit);

    [LibraryImport(Lib, EntryPoint = "pread", SetLastError = true)]
    public static partial nint Pread(int fd, byte* buffer, nuint count, long offset);

    [LibraryImport(Lib, EntryPoint = "pwrite", SetLastError = true)]
    public static partial nint Pwrite(int fd, byte* buffer, nuint count, long offset);

    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct RLimit
    {
        public ulong Current;
        public ulong Max;
    }

    // wait status decoding, as the W* macros do.
    public static bool WIfExited(int s) => (s & 0x7f) == 0;
    public static int WExitStatus(int s) => (s >> 8) & 0xff;
    public static bool WIfSignaled(int s) => ((s & 0x7f) + 1) >> 1 > 0 && (s & 0x7f) != 0x7f && (s & 0x7f) != 0;
    public static int WTermSig(int s) => s & 0x7f;
    public static bool WIfStopped(int s) => (s & 0xff) == 0x7f;
    public static int WStopSig(int s) => (s >> 8) & 0xff;
    public static int Event(int s) => (s >> 16) & 0xff;
}
