using System.Diagnostics;
using System.Runtime.InteropServices;
using LeakTools.Core.Interop;
using LeakTools.Core.ProcFs;

namespace LeakTools.Core.Tracing;

/// <summary>x86-64 <c>struct user_regs_struct</c>, as PTRACE_GETREGS and NT_PRSTATUS hold it.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct UserRegisters
{
    public ulong R15, R14, R13, R12, Rbp, Rbx, R11, R10, R9, R8, Rax, Rcx, Rdx, Rsi, Rdi, OrigRax,
        Rip, Cs, Eflags, Rsp, Ss, FsBase, GsBase, Ds, Es, Fs, Gs;

    public const int Size = 27 * 8;
}

/// <summary>What a traced thread is doing, as far as the session knows.</summary>
public sealed class TracedThread
{
    internal TracedThread(int tid) => Id = tid;

    public int Id { get; }
    /// <summary>In a ptrace-stop: registers and memory hold still.</summary>
    public bool Stopped { get; internal set; }
    /// <summary>A signal that arrived while we stopped it (signal-delivery-stop); it is handed back
    /// to the thread when it resumes or is detached, so the target never loses a signal.</summary>
    public int PendingSignal { get; internal set; }
    /// <summary>The thread was stopped by job control (SIGSTOP/SIGTSTP) when we looked.</summary>
    public bool GroupStopped { get; internal set; }
    /// <summary>The raw wait status of the last stop.</summary>
    public int LastStatus { get; internal set; }
}

/// <summary>A ptrace session on every thread of one process: PTRACE_SEIZE on each entry of
/// /proc/PID/task (re-scanned until no new thread shows up; PTRACE_O_TRACECLONE catches threads
/// born meanwhile), PTRACE_INTERRUPT to stop them, register and memory access, and a clean detach
/// that hands back any signal that arrived meanwhile. Every ptrace call runs on one
/// <see cref="PtraceThread"/>. Dispose always detaches.
/// Never use it on a child that System.Diagnostics.Process started in this process (the runtime
/// reaps it and swallows the stops): run it in the helper host (<see cref="Hosting.HelperClient"/>).</summary>
public sealed unsafe class PtraceSession : IDisposable
{
    private readonly PtraceThread _thread;
    private readonly bool _ownsThread;
    private readonly Dictionary<int, TracedThread> _threads = new();
    private readonly ProcRoot _root;
    private int _memFd = -1;
    private bool _detached;
    private long _firstStopTicks;

    private PtraceSession(int pid, PtraceThread thread, bool ownsThread, ProcRoot root)
    {
        ProcessId = pid;
        _thread = thread;
        _ownsThread = ownsThread;
        _root = root;
    }

    public int ProcessId { get; }

    public int Options { get; private set; }

    /// <summary>The traced threads, by thread id.</summary>
    public IReadOnlyDictionary<int, TracedThread> Threads => _threads;

    /// <summary>How long some thread of the target has been held in a ptrace-stop, from the first
    /// PTRACE_INTERRUPT to the end of the detach (or until now, while stopped).</summary>
    public TimeSpan FrozenFor { get; private set; }

    /// <summary>Seizes every thread of <paramref name="pid"/> without stopping it.</summary>
    public static PtraceSession Seize(int pid, int options = Ptrace.PTRACE_O_TRACECLONE, PtraceThread? thread = null, ProcRoot? root = null)
    {
        var session = new PtraceSession(pid, thread ?? new PtraceThread(), thread is null, root ?? ProcRoot.Default);
        try
        {
            session.Options = options;
            session._thread.Invoke(session.SeizeAllThreads);
            return session;
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    private void SeizeAllThreads()
    {
        for (int round = 0; round < 1000; round++)
        {
            int added = 0;
            foreach (int tid in ListTasks())
            {
                if (_threads.ContainsKey(tid)) continue;
                if (Ptrace.Call(Ptrace.PTRACE_SEIZE, tid, 0, Options) != 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == Errno.ESRCH && _threads.Count > 0) continue; // that thread just ended
                    throw SeizeError(errno);
                }
                _threads[tid] = new TracedThread(tid);
                added++;
            }
            if (added == 0) return;
        }
        throw new LeakToolsException(FailureKind.ResourceBusy, "ThreadsUnstable",
            $"Process {ProcessId} keeps creating threads faster than they can be seized.", ProcessId);
    }

    private List<int> ListTasks()
    {
        var tids = new List<int>();
        try
        {
            foreach (string dir in Directory.EnumerateDirectories(_root.File(ProcessId, "task")))
            {
                if (int.TryParse(Path.GetFileName(dir), out int tid)) tids.Add(tid);
            }
        }
        catch (DirectoryNotFoundException)
        {
            if (_threads.Count > 0) throw new ProcessExitedException(ProcessId);
            throw new ProcessNotFoundException(ProcessId);
        }
        if (tids.Count == 0) throw _threads.Count > 0 ? new ProcessExitedException(ProcessId) : new ProcessNotFoundException(ProcessId);
        return tids;
    }

    private LeakToolsException SeizeError(int errno)
    {
        if (errno == Errno.ESRCH) return new ProcessNotFoundException(ProcessId);
        if (errno is Errno.EPERM or Errno.EACCES)
        {
            int errnoStatus = ProcFile.TryRead(_root.File(ProcessId, "status"), out ReadOnlySpan<byte> text);
            ProcessStatus? status = errnoStatus == 0 ? ProcessStatus.Parse(text) : null;
            if (status is { TracerPid: > 0 })
            {
                return new LeakToolsException(FailureKind.ResourceBusy, "AlreadyTraced",
                    $"Process {ProcessId} ({status.Comm}) is already traced by process {TracerDescription(status.TracerPid)}; " +
                    "a process can have one tracer only. Detach the debugger (gdb, strace, another LeakTools session) and try again.", ProcessId);
            }
            if (status is { IsZombie: true }) return new ProcessExitedException(ProcessId);
            return new LeakToolsException(FailureKind.AccessDenied, "AccessDenied",
                $"ptrace of process {ProcessId}{(status is null ? "" : $" ({status.Comm})")} was denied: it needs root or CAP_SYS_PTRACE " +
                "(or the same user, with kernel.yama.ptrace_scope 0), and the process must not be marked undumpable.", ProcessId);
        }
        return new LeakToolsException(FailureKind.SystemError, "PtraceFailed",
            $"PTRACE_SEIZE of process {ProcessId} failed: {Errno.Describe(errno)} (errno {errno}).", ProcessId);
    }

    /// <summary>TracerPid names the tracing *thread*: "1234 (gdb)", or "1234 (dotnet, thread 1240)".</summary>
    private string TracerDescription(int tid)
    {
        string? status = ProcFile.TryReadText(_root.File(tid, "status"), out _);
        int tgid = tid;
        if (status is not null)
        {
            foreach (string line in status.Split('\n'))
            {
                if (line.StartsWith("Tgid:", StringComparison.Ordinal) && int.TryParse(line.AsSpan(5).Trim(), out int t)) tgid = t;
            }
        }
        return tgid == tid ? $"{tid} ({TracerName(tid)})" : $"{tgid} ({TracerName(tgid)}, thread {tid})";
    }

    private string TracerName(int pid)
    {
        string? comm = ProcFile.TryReadText(_root.File(pid, "comm"), out _);
        return comm?.Trim() ?? "?";
    }

    /// <summary>Stops every thread (PTRACE_INTERRUPT) and waits until each is in a ptrace-stop;
    /// threads started meanwhile are seized and stopped too.</summary>
    public void StopAll(TimeSpan timeout) => _thread.Invoke(() => StopAllCore(timeout));

    private void StopAllCore(TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        if (_firstStopTicks == 0) _firstStopTicks = Stopwatch.GetTimestamp();
        while (true)
        {
            foreach (TracedThread t in _threads.Values.ToList())
            {
                if (t.Stopped) continue;
                if (Ptrace.Call(Ptrace.PTRACE_INTERRUPT, t.Id, 0, 0) != 0 && Marshal.GetLastPInvokeError() != Errno.ESRCH)
                    throw SystemError("PTRACE_INTERRUPT", t.Id);
            }
            foreach (TracedThread t in _threads.Values.ToList())
            {
                if (!t.Stopped) WaitForStop(t, timeout - deadline.Elapsed);
            }
            if (_threads.Count == 0) throw new ProcessExitedException(ProcessId);
            if (_threads.Values.All(t => t.Stopped))
            {
                // Threads that a running thread created before it stopped and that escaped TRACECLONE.
                int before = _threads.Count;
                SeizeAllThreads();
                if (_threads.Count == before) return;
            }
        }
    }

    private void WaitForStop(TracedThread t, TimeSpan timeout)
    {
        long deadline = Stopwatch.GetTimestamp() + (long)(Math.Max(timeout.TotalSeconds, 0.05) * Stopwatch.Frequency);
        int spins = 0;
        while (_threads.ContainsKey(t.Id) && !t.Stopped)
        {
            int status;
            int r = Ptrace.WaitPid(t.Id, &status, Ptrace.__WALL | Ptrace.WNOHANG);
            if (r < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno == Errno.EINTR) continue;
                _threads.Remove(t.Id); // ECHILD: no longer ours (the thread ended)
                return;
            }
            if (r == 0)
            {
                if (Stopwatch.GetTimestamp() > deadline)
                {
                    throw new LeakToolsException(FailureKind.ResourceBusy, "ThreadDidNotStop",
                        $"Thread {t.Id} of process {ProcessId} did not stop within {timeout.TotalSeconds:0.#} s " +
                        $"(state {ThreadState(t.Id)}: a thread in uninterruptible sleep, D, cannot stop until its I/O ends).", ProcessId);
                }
                if (++spins < 2000) Thread.SpinWait(20);
                else Thread.Sleep(1);
                continue;
            }
            Record(r, status);
        }
    }

    /// <summary>Applies one wait status reported for <paramref name="tid"/>.</summary>
    private void Record(int tid, int status)
    {
        if (!_threads.TryGetValue(tid, out TracedThread? t))
        {
            t = new TracedThread(tid);
            _threads[tid] = t;
        }
        t.LastStatus = status;
        if (!Ptrace.WIfStopped(status))
        {
            _threads.Remove(tid); // exited or killed
            return;
        }
        t.Stopped = true;
        int sig = Ptrace.WStopSig(status);
        int ev = Ptrace.Event(status);
        if (ev == Ptrace.PTRACE_EVENT_STOP)
        {
            t.GroupStopped = sig is 19 or 20 or 21 or 22; // SIGSTOP SIGTSTP SIGTTIN SIGTTOU
        }
        else if (ev is Ptrace.PTRACE_EVENT_CLONE or Ptrace.PTRACE_EVENT_FORK or Ptrace.PTRACE_EVENT_VFORK)
        {
            ulong child;
            if (Ptrace.Call(Ptrace.PTRACE_GETEVENTMSG, tid, 0, (nint)(&child)) == 0 && ev == Ptrace.PTRACE_EVENT_CLONE)
            {
                int newTid = (int)child;
                if (!_threads.ContainsKey(newTid)) _threads[newTid] = new TracedThread(newTid); // auto-attached; stops by itself
            }
        }
        else if (ev == 0 && sig != 5)
        {
            t.PendingSignal = sig; // signal-delivery-stop: give it back on resume/detach
        }
    }

    private string ThreadState(int tid) => ProcFields.State(_root, ProcessId, tid)?.ToString() ?? "gone";

    private LeakToolsException SystemError(string what, int tid)
    {
        int errno = Marshal.GetLastPInvokeError();
        // A thread we hold stopped only answers ESRCH when SIGKILL woke it: the process is dying,
        // and /proc may show it alive for a moment longer. Give it that moment.
        if (errno == Errno.ESRCH && WaitUntilGone(TimeSpan.FromMilliseconds(500))) return new ProcessExitedException(ProcessId);
        return new LeakToolsException(FailureKind.SystemError, "PtraceFailed",
            $"{what} on thread {tid} of process {ProcessId} failed: {Errno.Describe(errno)} (errno {errno}).", ProcessId);
    }

    private bool WaitUntilGone(TimeSpan timeout)
    {
        var deadline = System.Diagnostics.Stopwatch.StartNew();
        while (ProcFields.IsAlive(_root, ProcessId))
        {
            if (deadline.Elapsed > timeout) return false;
            Thread.Sleep(5);
        }
        return true;
    }

    private TracedThread RequireStopped(int tid)
    {
        if (!_threads.TryGetValue(tid, out TracedThread? t) || !t.Stopped)
            throw new InvalidOperationException($"Thread {tid} is not stopped under this session.");
        return t;
    }

    /// <summary>PTRACE_GETREGS of a stopped thread.</summary>
    public UserRegisters GetRegisters(int tid) => _thread.Invoke(() =>
    {
        RequireStopped(tid);
        UserRegisters regs;
        if (Ptrace.Call(Ptrace.PTRACE_GETREGS, tid, 0, (nint)(&regs)) != 0) throw SystemError("PTRACE_GETREGS", tid);
        return regs;
    });

    /// <summary>PTRACE_SETREGS of a stopped thread.</summary>
    public void SetRegisters(int tid, UserRegisters regs) => _thread.Invoke(() =>
    {
        RequireStopped(tid);
        UserRegisters copy = regs;
        if (Ptrace.Call(Ptrace.PTRACE_SETREGS, tid, 0, (nint)(&copy)) != 0) throw SystemError("PTRACE_SETREGS", tid);
    });

    /// <summary>PTRACE_GETREGSET for <paramref name="noteType"/> (NT_PRFPREG, NT_X86_XSTATE...):
    /// the bytes the kernel filled, or null when the thread or CPU has no such set.</summary>
    public byte[]? GetRegisterSet(int tid, int noteType, int maxSize = 16384) => _thread.Invoke(() =>
    {
        RequireStopped(tid);
        byte[] buffer = new byte[maxSize];
        fixed (byte* p = buffer)
        {
            var iov = new Ptrace.IoVec { Base = p, Length = (nuint)buffer.Length };
            if (Ptrace.Call(Ptrace.PTRACE_GETREGSET, tid, noteType, (nint)(&iov)) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno is Errno.EINVAL or Errno.EIO or 19 /* ENODEV */) return null;
                throw SystemError("PTRACE_GETREGSET", tid);
            }
            return buffer.AsSpan(0, (int)iov.Length).ToArray();
        }
    });

    /// <summary>PTRACE_SETREGSET for <paramref name="noteType"/>.</summary>
    public void SetRegisterSet(int tid, int noteType, byte[] data) => _thread.Invoke(() =>
    {
        RequireStopped(tid);
        fixed (byte* p = data)
        {
            var iov = new Ptrace.IoVec { Base = p, Length = (nuint)data.Length };
            if (Ptrace.Call(Ptrace.PTRACE_SETREGSET, tid, noteType, (nint)(&iov)) != 0) throw SystemError("PTRACE_SETREGSET", tid);
        }
    });

    /// <summary>The 128-byte siginfo of the thread's current stop, or null when the stop has none.</summary>
    public byte[]? GetSignalInfo(int tid) => _thread.Invoke(() =>
    {
        RequireStopped(tid);
        byte[] info = new byte[128];
        fixed (byte* p = info)
        {
            return Ptrace.Call(Ptrace.PTRACE_GETSIGINFO, tid, 0, (nint)p) == 0 ? info : null;
        }
    });

    /// <summary>Reads target memory with process_vm_readv (no ptrace-stop needed). Returns the
    /// bytes read: fewer than asked when a page in the range is unmapped or unreadable.</summary>
    public int ReadMemory(ulong address, Span<byte> buffer) => ProcessMemoryAccess.Read(ProcessId, address, buffer);

    /// <summary>Reads through /proc/PID/mem, which (being the tracer) also reaches pages the
    /// target itself may not read (PROT_NONE, execute-only).</summary>
    public int ReadMemoryForced(ulong address, Span<byte> buffer)
    {
        int fd = MemFd();
        int total = 0;
        fixed (byte* p = buffer)
        {
            while (total < buffer.Length)
            {
                nint n = Ptrace.Pread(fd, p + total, (nuint)(buffer.Length - total), (long)(address + (ulong)total));
                if (n <= 0)
                {
                    if (n < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR) continue;
                    break;
                }
                total += (int)n;
            }
        }
        return total;
    }

    /// <summary>Writes target memory through /proc/PID/mem (works on read-only text too, as
    /// breakpoints need). Throws when not every byte could be written.</summary>
    public void WriteMemory(ulong address, ReadOnlySpan<byte> data)
    {
        int fd = MemFd();
        int total = 0;
        fixed (byte* p = data)
        {
            while (total < data.Length)
            {
                nint n = Ptrace.Pwrite(fd, p + total, (nuint)(data.Length - total), (long)(address + (ulong)total));
                if (n <= 0)
                {
                    if (n < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR) continue;
                    throw new LeakToolsException(FailureKind.SystemError, "MemoryWriteFailed",
                        $"Writing {data.Length} bytes at 0x{address:x} of process {ProcessId} failed: {Errno.Describe(Marshal.GetLastPInvokeError())}.", ProcessId);
                }
                total += (int)n;
            }
        }
    }

    private int MemFd()
    {
        if (_memFd >= 0) return _memFd;
        string path = _root.File(ProcessId, "mem");
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes) _memFd = Libc.Open(p, 2 /* O_RDWR */ | Libc.O_CLOEXEC);
        if (_memFd < 0) throw ProcErrors.FromErrno(Marshal.GetLastPInvokeError(), ProcessId, path, existedBefore: true);
        return _memFd;
    }

    /// <summary>Resumes a stopped thread (PTRACE_CONT), handing back its pending signal.</summary>
    public void Continue(int tid) => _thread.Invoke(() =>
    {
        TracedThread t = RequireStopped(tid);
        if (Ptrace.Call(Ptrace.PTRACE_CONT, tid, 0, t.PendingSignal) != 0 && Marshal.GetLastPInvokeError() != Errno.ESRCH)
            throw SystemError("PTRACE_CONT", tid);
        t.PendingSignal = 0;
        t.Stopped = false;
    });

    /// <summary>Resumes a stopped thread with <paramref name="signal"/> (0: none) instead of its
    /// pending one, which is dropped: for a thread the caller is running code on, whose signals
    /// must wait.</summary>
    public void Continue(int tid, int signal) => _thread.Invoke(() =>
    {
        TracedThread t = RequireStopped(tid);
        if (Ptrace.Call(Ptrace.PTRACE_CONT, tid, 0, signal) != 0 && Marshal.GetLastPInvokeError() != Errno.ESRCH)
            throw SystemError("PTRACE_CONT", tid);
        t.PendingSignal = 0;
        t.Stopped = false;
    });

    /// <summary>Drops the signal a stopped thread stopped with, so it is not delivered on resume or
    /// detach (a fault the caller caused on purpose, like the return of a remote call).</summary>
    public void DiscardPendingSignal(int tid) => _thread.Invoke(() => RequireStopped(tid).PendingSignal = 0);

    /// <summary>Waits for the next stop of any traced thread (for tracers that resume threads):
    /// returns its id and wait status, or null after <paramref name="timeout"/>.</summary>
    public (int Tid, int Status)? WaitAny(TimeSpan timeout) => _thread.Invoke<(int, int)?>(() =>
    {
        long deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        do
        {
            foreach (TracedThread t in _threads.Values.ToList())
            {
                if (t.Stopped) continue;
                int status;
                int r = Ptrace.WaitPid(t.Id, &status, Ptrace.__WALL | Ptrace.WNOHANG);
                if (r > 0)
                {
                    Record(r, status);
                    return (r, status);
                }
                if (r < 0 && Marshal.GetLastPInvokeError() == 10 /* ECHILD */) _threads.Remove(t.Id);
            }
            Thread.Sleep(1);
        }
        while (Stopwatch.GetTimestamp() < deadline);
        return null;
    });

    // ---- Finer control, for tracers that keep threads running (the allocation tracer). Every
    // call below must run on the session's ptrace thread (inside one Invoke of the tracer loop).

    /// <summary>The session's ptrace thread: run a tracer loop inside <see cref="PtraceThread.Invoke{T}"/>.</summary>
    public PtraceThread PtraceThread => _thread;

    /// <summary>Seizes a process that is this process's own stopped child (launch mode) with
    /// <paramref name="options"/>; the caller then resumes it with SIGCONT.</summary>
    public static PtraceSession SeizeChild(int pid, int options, PtraceThread? thread = null) =>
        Seize(pid, options, thread);

    /// <summary>waitpid(-1, __WALL): the next stop or exit of any tracee (or child of this
    /// process), or null with <paramref name="block"/> false and nothing pending. Known threads
    /// are updated; unknown pids (fork children, other children) are left to the caller. Only for
    /// a process that has no children of its own besides its tracees (the helper host).</summary>
    public (int Pid, int Status)? WaitNext(bool block)
    {
        while (true)
        {
            int status;
            int r = Ptrace.WaitPid(-1, &status, Ptrace.__WALL | (block ? 0 : Ptrace.WNOHANG));
            if (r == 0) return null;
            if (r < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno == Errno.EINTR) continue;
                if (errno == 10 /* ECHILD */) { if (block) System.Threading.Thread.Sleep(1); return null; }
                throw new LeakToolsException(FailureKind.SystemError, "PtraceFailed", $"waitpid failed: {Errno.Describe(errno)}.", ProcessId);
            }
            if (_threads.ContainsKey(r)) Record(r, status);
            return (r, status);
        }
    }

    /// <summary>Blocking waitpid for one thread (after a single step or an interrupt).</summary>
    public int WaitThread(int tid)
    {
        while (true)
        {
            int status;
            int r = Ptrace.WaitPid(tid, &status, Ptrace.__WALL);
            if (r < 0)
            {
                if (Marshal.GetLastPInvokeError() == Errno.EINTR) continue;
                _threads.Remove(tid);
                return -1;
            }
            if (_threads.ContainsKey(tid)) Record(tid, status);
            return status;
        }
    }

    /// <summary>Takes a thread (or a fork child) the caller learned of into the session.</summary>
    public TracedThread Adopt(int tid, bool stopped)
    {
        if (!_threads.TryGetValue(tid, out TracedThread? t))
        {
            t = new TracedThread(tid);
            _threads[tid] = t;
        }
        t.Stopped = stopped;
        return t;
    }

    /// <summary>Forgets a thread that exited.</summary>
    public void Forget(int tid) => _threads.Remove(tid);

    /// <summary>PTRACE_CONT with <paramref name="signal"/> (0: none). Returns false when the thread is gone.</summary>
    public bool Resume(int tid, int signal)
    {
        if (_threads.TryGetValue(tid, out TracedThread? t))
        {
            t.Stopped = false;
            t.PendingSignal = 0;
        }
        return Ptrace.Call(Ptrace.PTRACE_CONT, tid, 0, signal) == 0;
    }

    /// <summary>PTRACE_LISTEN: leaves a group-stopped thread stopped, but lets it report SIGCONT.</summary>
    public void Listen(int tid)
    {
        if (_threads.TryGetValue(tid, out TracedThread? t)) t.Stopped = false;
        Ptrace.Call(Ptrace.PTRACE_LISTEN, tid, 0, 0);
    }

    /// <summary>PTRACE_INTERRUPT of one thread.</summary>
    public void Interrupt(int tid) => Ptrace.Call(Ptrace.PTRACE_INTERRUPT, tid, 0, 0);

    /// <summary>PTRACE_SINGLESTEP and wait for the step's stop; signals that arrive meanwhile are
    /// kept as the thread's pending signal. Returns false when the thread vanished.</summary>
    public bool SingleStep(int tid)
    {
        for (int attempt = 0; attempt < 16; attempt++)
        {
            TracedThread t = RequireStopped(tid);
            if (Ptrace.Call(Ptrace.PTRACE_SINGLESTEP, tid, 0, 0) != 0) return false;
            t.Stopped = false;
            int pending = t.PendingSignal;
            int status = WaitThread(tid);
            if (status < 0 || !Ptrace.WIfStopped(status)) return false;
            int sig = Ptrace.WStopSig(status);
            if (sig == 5 && Ptrace.Event(status) == 0) { t.PendingSignal = pending; return true; }
            if (Ptrace.Event(status) == 0 && sig != 5) { t.PendingSignal = sig; continue; } // a signal came first: keep it, step again
            t.PendingSignal = pending;
        }
        return false;
    }

    /// <summary>PTRACE_DETACH of one thread (or fork child) with <paramref name="signal"/>.</summary>
    public void DetachOne(int tid, int signal)
    {
        Ptrace.Call(Ptrace.PTRACE_DETACH, tid, 0, signal);
        _threads.Remove(tid);
    }

    /// <summary>PTRACE_GETEVENTMSG of a thread's current event stop.</summary>
    public ulong EventMessage(int tid)
    {
        ulong message = 0;
        Ptrace.Call(Ptrace.PTRACE_GETEVENTMSG, tid, 0, (nint)(&message));
        return message;
    }

    /// <summary>Runs one system call in a stopped thread: its registers are saved, a syscall
    /// instruction at <paramref name="syscallInstruction"/> is single-stepped with the arguments,
    /// the registers are restored (orig_rax too, so an interrupted system call restarts as
    /// before). Returns the raw result (-errno on failure), or null when the thread vanished.</summary>
    public long? InjectSyscall(int tid, ulong syscallInstruction, long number, params ulong[] args)
    {
        UserRegisters saved = GetRegisters(tid);
        UserRegisters regs = saved;
        regs.Rax = (ulong)number;
        regs.OrigRax = ulong.MaxValue; // no syscall restart for our call
        regs.Rdi = args.Length > 0 ? args[0] : 0;
        regs.Rsi = args.Length > 1 ? args[1] : 0;
        regs.Rdx = args.Length > 2 ? args[2] : 0;
        regs.R10 = args.Length > 3 ? args[3] : 0;
        regs.R8 = args.Length > 4 ? args[4] : 0;
        regs.R9 = args.Length > 5 ? args[5] : 0;
        regs.Rip = syscallInstruction;
        SetRegisters(tid, regs);
        bool stepped = SingleStep(tid);
        if (!stepped) return null;
        long result = (long)GetRegisters(tid).Rax;
        SetRegisters(tid, saved);
        return result;
    }

    /// <summary>Detaches from every thread: running ones are stopped first (PTRACE_DETACH needs a
    /// ptrace-stop); pending signals are handed back. Safe to call twice.</summary>
    public void Detach()
    {
        if (_detached) return;
        _thread.Invoke(() =>
        {
            if (_detached) return;
            _detached = true;
            foreach (TracedThread t in _threads.Values.ToList())
            {
                if (t.Stopped) continue;
                Ptrace.Call(Ptrace.PTRACE_INTERRUPT, t.Id, 0, 0);
                try { WaitForStop(t, TimeSpan.FromSeconds(2)); }
                catch (LeakToolsException) { /* left for the kernel: detach on tracer exit */ }
            }
            foreach (TracedThread t in _threads.Values)
            {
                Ptrace.Call(Ptrace.PTRACE_DETACH, t.Id, 0, t.PendingSignal);
                t.Stopped = false;
            }
            if (_firstStopTicks != 0) FrozenFor = Stopwatch.GetElapsedTime(_firstStopTicks);
        });
    }

    public void Dispose()
    {
        try { Detach(); }
        finally
        {
            if (_memFd >= 0) { Libc.Close(_memFd); _memFd = -1; }
            if (_ownsThread) _thread.Dispose();
        }
    }
}

/// <summary>Writes another process's memory through /proc/PID/mem (a fork child's copy of the
/// breakpoints). Returns false on failure.</summary>
public static unsafe partial class ProcessMemoryWriter
{
    public static bool Write(int pid, ulong address, ReadOnlySpan<byte> data)
    {
        byte[] path = System.Text.Encoding.UTF8.GetBytes($"/proc/{pid}/mem\0");
        int fd;
        fixed (byte* p = path) fd = Libc.Open(p, 2 /* O_RDWR */ | Libc.O_CLOEXEC);
        if (fd < 0) return false;
        try
        {
            fixed (byte* d = data)
            {
                return Ptrace.Pwrite(fd, d, (nuint)data.Length, (long)address) == data.Length;
            }
        }
        finally
        {
            Libc.Close(fd);
        }
    }
}

/// <summary>process_vm_writev for any thread (writable memory only).</summary>
public static unsafe partial class ProcessMemoryWriter
{
    public static bool WriteVm(int pid, ulong address, ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
        {
            var local = new Ptrace.IoVec { Base = p, Length = (nuint)data.Length };
            var remote = new Ptrace.IoVec { Base = (void*)address, Length = (nuint)data.Length };
            return Ptrace.ProcessVmWritev(pid, &local, 1, &remote, 1, 0) == data.Length;
        }
    }
}

/// <summary>process_vm_readv for any thread (no ptrace-stop needed, only ptrace permission).</summary>
public static unsafe class ProcessMemoryAccess
{
    /// <summary>Reads as much of [address, address+buffer.Length) as is readable from the start;
    /// returns the byte count (0 when the first page is unreadable).</summary>
    public static int Read(int pid, ulong address, Span<byte> buffer)
    {
        int total = 0;
        fixed (byte* p = buffer)
        {
            while (total < buffer.Length)
            {
                var local = new Ptrace.IoVec { Base = p + total, Length = (nuint)(buffer.Length - total) };
                var remote = new Ptrace.IoVec { Base = (void*)(address + (ulong)total), Length = local.Length };
                nint n = Ptrace.ProcessVmReadv(pid, &local, 1, &remote, 1, 0);
                if (n <= 0)
                {
                    if (n < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR) continue;
                    if (n < 0 && Marshal.GetLastPInvokeError() == Errno.ESRCH) throw new ProcessExitedException(pid);
                    break;
                }
                total += (int)n;
            }
        }
        return total;
    }
}
