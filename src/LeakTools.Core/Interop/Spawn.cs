using System.Runtime.InteropServices;
using System.Text;

namespace LeakTools.Core.Interop;

/// <summary>posix_spawn with pipes, for children that .NET's Process class must not know about
/// (it reaps its children on SIGCHLD and would swallow their ptrace stops and exit statuses).</summary>
internal static unsafe partial class Spawn
{
    private const string Lib = "libc";

    [LibraryImport(Lib, EntryPoint = "posix_spawn")]
    private static partial int PosixSpawn(int* pid, byte* path, void* fileActions, void* attr, byte** argv, byte** envp);

    [LibraryImport(Lib, EntryPoint = "posix_spawn_file_actions_init")]
    private static partial int FileActionsInit(void* fa);

    [LibraryImport(Lib, EntryPoint = "posix_spawn_file_actions_destroy")]
    private static partial int FileActionsDestroy(void* fa);

    [LibraryImport(Lib, EntryPoint = "posix_spawn_file_actions_adddup2")]
    private static partial int FileActionsAddDup2(void* fa, int fd, int newFd);

    [LibraryImport(Lib, EntryPoint = "posix_spawn_file_actions_addopen")]
    private static partial int FileActionsAddOpen(void* fa, int fd, byte* path, int flags, int mode);

    [LibraryImport(Lib, EntryPoint = "pipe2", SetLastError = true)]
    public static partial int Pipe2(int* fds, int flags);

    [LibraryImport(Lib, EntryPoint = "posix_spawnattr_init")]
    private static partial int AttrInit(void* attr);

    [LibraryImport(Lib, EntryPoint = "posix_spawnattr_destroy")]
    private static partial int AttrDestroy(void* attr);

    [LibraryImport(Lib, EntryPoint = "posix_spawnattr_setflags")]
    private static partial int AttrSetFlags(void* attr, short flags);

    [LibraryImport(Lib, EntryPoint = "posix_spawnattr_setpgroup")]
    private static partial int AttrSetPgroup(void* attr, int pgroup);

    private const short POSIX_SPAWN_SETPGROUP = 2;

    [LibraryImport(Lib, EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(int fd, int cmd, int arg);

    private const int F_DUPFD_CLOEXEC = 1030;

    /// <summary>Creates a pipe whose ends are close-on-exec in this process and numbered 64 or
    /// above, so that dup2 onto a child's low descriptors never clobbers the other end.</summary>
    public static (int Read, int Write) Pipe()
    {
        int* fds = stackalloc int[2];
        if (Pipe2(fds, Libc.O_CLOEXEC) != 0)
            throw new LeakToolsException(FailureKind.SystemError, "PipeFailed", $"pipe2 failed: {Errno.Describe(Marshal.GetLastPInvokeError())}");
        int r = Fcntl(fds[0], F_DUPFD_CLOEXEC, 64), w = Fcntl(fds[1], F_DUPFD_CLOEXEC, 64);
        Libc.Close(fds[0]);
        Libc.Close(fds[1]);
        return (r, w);
    }

    /// <summary>Starts <paramref name="argv"/>[0] with the given descriptors dup'ed onto the
    /// child's fds (child fd -> our fd); fd 0 reads /dev/null unless mapped. With
    /// <paramref name="ownProcessGroup"/> the child leads a new process group, so a Ctrl+C at the
    /// terminal (SIGINT to the foreground group) does not reach it. Returns the pid.</summary>
    public static int Start(IReadOnlyList<string> argv, IReadOnlyDictionary<int, int> fds, IEnumerable<string>? environment = null, bool ownProcessGroup = false)
    {
        var allocations = new List<nint>();
        byte* Str(string s)
        {
            byte[] b = Encoding.UTF8.GetBytes(s + "\0");
            nint p = Marshal.AllocHGlobal(b.Length);
            Marshal.Copy(b, 0, p, b.Length);
            allocations.Add(p);
            return (byte*)p;
        }
        string[] env = (environment ?? Environment.GetEnvironmentVariables().Keys.Cast<string>()
            .Select(k => $"{k}={Environment.GetEnvironmentVariable(k)}")).ToArray();
        byte** argvp = stackalloc byte*[argv.Count + 1];
        for (int i = 0; i < argv.Count; i++) argvp[i] = Str(argv[i]);
        argvp[argv.Count] = null;
        byte** envp = (byte**)Marshal.AllocHGlobal((env.Length + 1) * sizeof(nint));
        allocations.Add((nint)envp);
        for (int i = 0; i < env.Length; i++) envp[i] = Str(env[i]);
        envp[env.Length] = null;

        void* fa = (void*)Marshal.AllocHGlobal(256); // posix_spawn_file_actions_t is 80 bytes in glibc
        allocations.Add((nint)fa);
        FileActionsInit(fa);
        void* attr = (void*)Marshal.AllocHGlobal(1024); // posix_spawnattr_t is 336 bytes in glibc
        allocations.Add((nint)attr);
        AttrInit(attr);
        if (ownProcessGroup)
        {
            AttrSetFlags(attr, POSIX_SPAWN_SETPGROUP);
            AttrSetPgroup(attr, 0);
        }
        try
        {
            if (!fds.ContainsKey(0)) FileActionsAddOpen(fa, 0, Str("/dev/null"), Libc.O_RDONLY, 0);
            foreach (var (childFd, ourFd) in fds) FileActionsAddDup2(fa, ourFd, childFd);
            int pid;
            int rc = PosixSpawn(&pid, argvp[0], fa, attr, argvp, envp);
            if (rc != 0)
                throw new LeakToolsException(FailureKind.SystemError, "SpawnFailed", $"Cannot start {argv[0]}: {Errno.Describe(rc)}.", argv[0]);
            return pid;
        }
        finally
        {
            FileActionsDestroy(fa);
            AttrDestroy(attr);
            foreach (nint p in allocations) Marshal.FreeHGlobal(p);
        }
    }
}
