using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using LeakTools.Core.Interop;
using LeakTools.Core.ProcFs;

namespace LeakTools.Core.Tracing.Agent;

/// <summary>Loads the agent into a running process with ptrace, without gdb (heaptrack's way needs
/// gdb and is "UNSTABLE", its README says). Every thread is seized but keeps running; breakpoints go
/// on the entries of the allocator's functions; the first thread that reaches one (and was not
/// called from the dynamic linker) holds no allocator lock: it is kept there while the others run
/// on and release whatever they hold (memray's method). A process that does not allocate (an idle
/// daemon) is stopped briefly instead and a thread blocked in a waiting system call (read, poll,
/// epoll_wait, accept, nanosleep...) is taken if its stack, unwound with CFI, shows no dynamic
/// linker frame and no signal handler: such a thread holds neither the loader's lock nor an
/// allocator lock; it resumes its system call afterwards (orig_rax restored, so the kernel restarts it). On that thread, with its stack untouched
/// (calls run on a private stack mapped for the purpose): <c>dlopen</c> of the agent (glibc 2.34+
/// exports it from libc; older: <c>__libc_dlopen_mode</c>, or libdl's dlopen when loaded), then
/// <c>leaktools_agent_start</c>, which connects back and hooks. Then every register (orig_rax and
/// the extended state included) and errno are put back and all threads detached. An agent already
/// loaded (an earlier session) is reused: only the start call is made.</summary>
internal sealed class AgentInjector
{
    private const int SIGTRAP = 5, SIGSEGV = 11, SI_KERNEL = 0x80;
    private const int RTLD_NOW = 2;
    private const uint RTLD_DLOPEN_PRIVATE = 0x80000000; // __RTLD_DLOPEN, what __libc_dlopen_mode callers pass
    private const ulong PrivateStackSize = 1 << 20;

    private readonly int _pid;
    private readonly ProcRoot _root;
    private readonly Action<string>? _verbose;
    private PtraceSession _session = null!;
    private readonly Dictionary<ulong, byte> _breakpoints = new();
    private readonly List<int> _deferredSignals = new();
    private int _tid;
    private bool _inSyscall;

    /// <summary>x86-64 system calls a thread may wait in that neither malloc nor the dynamic
    /// linker makes while holding a lock (futex, mmap, openat... are not here).</summary>
    private static readonly HashSet<long> s_waitingSyscalls = new()
    {
        0 /* read */, 7 /* poll */, 23 /* select */, 34 /* pause */, 35 /* nanosleep */, 43 /* accept */,
        45 /* recvfrom */, 47 /* recvmsg */, 61 /* wait4 */, 70 /* msgrcv */, 128 /* rt_sigtimedwait */,
        130 /* rt_sigsuspend */, 208 /* io_getevents */, 230 /* clock_nanosleep */, 232 /* epoll_wait */,
        247 /* waitid */, 270 /* pselect6 */, 271 /* ppoll */, 281 /* epoll_pwait */, 288 /* accept4 */,
        299 /* recvmmsg */, 441 /* epoll_pwait2 */,
    };

    /// <summary>The thread was taken in a waiting system call (an idle process), not at an allocator entry.</summary>
    public bool TakenInSystemCall => _inSyscall;

    public AgentInjector(int pid, ProcRoot? root = null, Action<string>? verbose = null)
    {
        _pid = pid;
        _root = root ?? ProcRoot.Default;
        _verbose = verbose;
    }

    /// <summary>The thread that ran the calls.</summary>
    public int ThreadId => _tid;

    /// <summary>The agent was already loaded (an earlier attach): only the start call was made.</summary>
    public bool Reused { get; private set; }

    /// <summary>How long the chosen thread was held.</summary>
    public TimeSpan ThreadHeld { get; private set; }

    /// <summary>Checks that injection can work at all, before anything is touched: a dynamically
    /// linked glibc process without a seccomp filter, not stopped.</summary>
    public static List<RemoteModule> CheckTarget(int pid, ProcRoot root)
    {
        string statusPath = root.File(pid, "status");
        string? status = ProcFile.TryReadText(statusPath, out int errno);
        if (status is null) throw ProcErrors.FromErrno(errno, pid, statusPath);
        foreach (string line in status.Split('\n'))
        {
            if (line.StartsWith("Seccomp:", StringComparison.Ordinal) && line[8..].Trim() is string mode && mode != "0")
            {
                throw new LeakToolsException(FailureKind.NotSupported, "AgentUnavailable",
                    $"Process {pid} runs under a seccomp filter (mode {mode}): loading the agent makes system calls the filter may forbid (and kill the process for).", pid);
            }
            if (line.StartsWith("State:", StringComparison.Ordinal) && line.Contains("(stopped)", StringComparison.Ordinal))
            {
                throw new LeakToolsException(FailureKind.NotSupported, "AgentUnavailable",
                    $"Process {pid} is stopped (SIGSTOP): it cannot reach an allocation to load the agent. Continue it (kill -CONT {pid}) first.", pid);
            }
        }
        List<RemoteModule> modules = RemoteModules.Read(pid, root);
        // Just started: the dynamic linker may still be mapping the libraries (libc not there yet).
        for (int i = 0; i < 100 && !modules.Any(m => m.IsLibc) && modules.Any(m => m.IsDynamicLinker); i++)
        {
            Thread.Sleep(20);
            modules = RemoteModules.Read(pid, root);
        }
        if (modules.Any(m => m.IsMusl))
        {
            throw new LeakToolsException(FailureKind.NotSupported, "AgentUnavailable",
                $"Process {pid} uses musl libc; the agent is built for glibc.", pid);
        }
        if (!modules.Any(m => m.IsLibc) || !modules.Any(m => m.IsDynamicLinker))
        {
            throw new LeakToolsException(FailureKind.NotSupported, "AgentUnavailable",
                $"Process {pid} is statically linked (no libc.so or dynamic linker mapped): a library cannot be loaded into it.", pid);
        }
        return modules;
    }

    /// <summary>Injects (or restarts) the agent. <paramref name="agentHostPath"/> is the library as
    /// we read it, <paramref name="agentTargetPath"/> as the target names it; <paramref name="startArguments"/>
    /// goes to leaktools_agent_start. Returns its result (0: hooked and connected).</summary>
    public int Inject(string agentHostPath, string agentTargetPath, string startArguments, TimeSpan? waitForAllocation, CancellationToken cancel)
    {
        List<RemoteModule> modules = CheckTarget(_pid, _root);
        RemoteModule libc = modules.First(m => m.IsLibc);
        RemoteModule? loaded = modules.FirstOrDefault(m => m.FileName == AgentPlacement.LibraryName &&
            SameBuild(m.OpenPath, agentHostPath));
        Reused = loaded is not null;

        ulong errnoLocation = libc.Symbol("__errno_location") ?? throw Missing("__errno_location", libc);
        ulong mmap = libc.Symbol("mmap") ?? throw Missing("mmap", libc);
        ulong munmap = libc.Symbol("munmap") ?? throw Missing("munmap", libc);
        ulong dlopen = 0, dlerror = 0;
        bool privateMode = false;
        if (!Reused)
        {
            RemoteModule? libdl = modules.FirstOrDefault(m => m.FileName.StartsWith("libdl.so", StringComparison.Ordinal));
            if (libc.Symbol("dlopen") is ulong d) { dlopen = d; dlerror = libc.Symbol("dlerror") ?? 0; }
            else if (libdl?.Symbol("dlopen") is ulong d2) { dlopen = d2; dlerror = libdl.Symbol("dlerror") ?? 0; }
            else if (libc.Symbol("__libc_dlopen_mode") is ulong d3) { dlopen = d3; privateMode = true; }
            else throw Missing("dlopen or __libc_dlopen_mode", libc);
        }

        // Breakpoints: the entries of every malloc/free (calloc, realloc) a module defines.
        var entries = new HashSet<ulong>();
        foreach (RemoteModule m in modules)
        {
            if (m.IsDynamicLinker) continue;
            foreach (string name in new[] { "malloc", "free", "calloc", "realloc" })
                if (m.Symbol(name) is ulong a) entries.Add(a);
        }
        if (entries.Count == 0) throw Missing("malloc", libc);

        _session = PtraceSession.Seize(_pid, Ptrace.PTRACE_O_TRACECLONE, root: _root);
        var held = new Stopwatch();
        UserRegisters saved = default;
        byte[]? savedXState = null;
        bool haveThread = false;
        try
        {
            InsertBreakpoints(entries);
            _verbose?.Invoke($"Waiting for a thread of process {_pid} to enter malloc or free (breakpoints on {entries.Count} entries).");
            WaitForThreadAtEntry(modules, waitForAllocation, cancel);
            held.Start();
            haveThread = true;
            saved = _session.GetRegisters(_tid);
            if (!_inSyscall) saved.Rip -= 1; // back onto the entry: it runs from there once we are done
            savedXState = _session.GetRegisterSet(_tid, Ptrace.NT_X86_XSTATE);
            RemoveBreakpoints();
            _verbose?.Invoke(_inSyscall
                ? $"Thread {_tid} waits in system call {(long)saved.OrigRax} with no loader or allocator frame on its stack; loading the agent on it."
                : $"Thread {_tid} stopped at the entry of an allocator function; loading the agent on it.");

            ulong ownStack = (saved.Rsp - 512) & ~0xFUL; // below the red zone of the interrupted code
            ulong errnoAddress = Call(saved, errnoLocation, ownStack);
            byte[] errnoValue = new byte[4];
            _session.ReadMemory(errnoAddress, errnoValue);

            ulong stack = Call(saved, mmap, ownStack, 0, PrivateStackSize, 3 /* PROT_READ|PROT_WRITE */, 0x22 /* MAP_PRIVATE|MAP_ANONYMOUS */, ulong.MaxValue, 0);
            if (stack == ulong.MaxValue || stack == 0 || stack > ulong.MaxValue - 4096)
                throw Failed("mmap of a private stack failed in the target");
            try
            {
                ulong top = stack + PrivateStackSize - 256;
                ulong pathAddress = WriteString(stack, agentTargetPath);
                ulong argsAddress = WriteString(stack + 4096, startArguments);
                if (!Reused)
                {
                    ulong handle = Call(saved, dlopen, top, pathAddress, privateMode ? RTLD_NOW | RTLD_DLOPEN_PRIVATE : RTLD_NOW);
                    if (handle == 0)
                    {
                        string why = dlerror != 0 ? ReadString(Call(saved, dlerror, top)) : "no dlerror on this glibc";
                        throw Failed($"dlopen of {agentTargetPath} failed: {why}");
                    }
                    loaded = RemoteModules.Read(_pid, _root).FirstOrDefault(m => m.Path == agentTargetPath)
                        ?? throw Failed($"{agentTargetPath} is not mapped after dlopen");
                }
                ulong start = loaded!.Symbol("leaktools_agent_start") ?? throw Missing("leaktools_agent_start", loaded);
                ulong rc = Call(saved, start, top, argsAddress);
                return (int)(uint)rc;
            }
            finally
            {
                Call(saved, munmap, ownStack, stack, PrivateStackSize);
                _session.WriteMemory(errnoAddress, errnoValue);
            }
        }
        finally
        {
            try
            {
                if (_breakpoints.Count > 0) RemoveBreakpoints();
                DrainPendingTraps();
                if (haveThread)
                {
                    _session.SetRegisters(_tid, saved);
                    if (savedXState is not null) _session.SetRegisterSet(_tid, Ptrace.NT_X86_XSTATE, savedXState);
                }
            }
            finally
            {
                _session.Dispose();
                ThreadHeld = held.Elapsed;
                foreach (int sig in _deferredSignals.Distinct()) Ptrace.Tgkill(_pid, _tid, sig);
            }
        }
    }

    private static bool SameBuild(string loadedPath, string ours) =>
        AgentPlacement.TryShortHash(loadedPath) is string h && h == AgentPlacement.TryShortHash(ours);

    private void InsertBreakpoints(IEnumerable<ulong> entries)
    {
        // All threads stand still while the bytes change, so none executes a half-written entry.
        _session.StopAll(TimeSpan.FromSeconds(10));
        Span<byte> b = stackalloc byte[1];
        ReadOnlySpan<byte> int3 = stackalloc byte[] { 0xCC };
        foreach (ulong a in entries)
        {
            if (_session.ReadMemoryForced(a, b) != 1) continue;
            _breakpoints[a] = b[0];
            _session.WriteMemory(a, int3);
        }
        foreach (TracedThread t in _session.Threads.Values.ToList())
            if (t.Stopped) _session.Continue(t.Id);
    }

    private void RemoveBreakpoints()
    {
        _session.StopAll(TimeSpan.FromSeconds(10));
        foreach (var (a, original) in _breakpoints) _session.WriteMemory(a, new[] { original });
        var removed = new HashSet<ulong>(_breakpoints.Keys);
        _breakpoints.Clear();
        foreach (TracedThread t in _session.Threads.Values.ToList())
        {
            if (!t.Stopped || t.Id == _tid) continue;
            RewindIfOurs(t.Id, t.LastStatus, removed);
            _session.Continue(t.Id);
        }
        _removed = removed;
    }

    private HashSet<ulong> _removed = new();

    /// <summary>A thread that hit one of our int3s: put it back on the entry to run the original
    /// instruction. True when it was ours.</summary>
    private bool RewindIfOurs(int tid, int status, HashSet<ulong> addresses)
    {
        if (!Ptrace.WIfStopped(status) || Ptrace.WStopSig(status) != SIGTRAP || Ptrace.Event(status) != 0) return false;
        UserRegisters r = _session.GetRegisters(tid);
        if (!addresses.Contains(r.Rip - 1) || !IsBreakpointTrap(tid)) return false;
        r.Rip -= 1;
        _session.SetRegisters(tid, r);
        return true;
    }

    private bool IsBreakpointTrap(int tid)
    {
        byte[]? info = _session.GetSignalInfo(tid);
        return info is not null && BinaryPrimitives.ReadInt32LittleEndian(info.AsSpan(8)) == SI_KERNEL;
    }

    private void WaitForThreadAtEntry(List<RemoteModule> modules, TimeSpan? limit, CancellationToken cancel)
    {
        RemoteModule[] linker = modules.Where(m => m.IsDynamicLinker).ToArray();
        var clock = Stopwatch.StartNew();
        TimeSpan nextIdleLook = TimeSpan.FromMilliseconds(200);
        while (true)
        {
            if (cancel.IsCancellationRequested) throw new OperationCanceledException(cancel);
            if (clock.Elapsed >= nextIdleLook)
            {
                // No allocation for a while: look for a thread waiting where it holds nothing.
                if (TakeWaitingThread(modules)) return;
                nextIdleLook = clock.Elapsed + TimeSpan.FromSeconds(2);
            }
            if (limit is TimeSpan l && clock.Elapsed > l)
            {
                throw new LeakToolsException(FailureKind.ResourceBusy, "AgentNoAllocation",
                    $"No thread of process {_pid} entered malloc or free within {l.TotalSeconds:0.#} s, so there was no safe moment to load the agent.", _pid);
            }
            if (_session.WaitAny(TimeSpan.FromMilliseconds(100)) is not (int tid, int status)) continue;
            if (!Ptrace.WIfStopped(status))
            {
                if (_session.Threads.Count == 0) throw new ProcessExitedException(_pid);
                continue;
            }
            if (Ptrace.WStopSig(status) == SIGTRAP && Ptrace.Event(status) == 0)
            {
                UserRegisters r = _session.GetRegisters(tid);
                if (_breakpoints.ContainsKey(r.Rip - 1) && IsBreakpointTrap(tid))
                {
                    // Called from the dynamic linker (inside dlopen, or allocating TLS): it holds the
                    // loader lock, and a dlopen on it would re-enter a half-done load. Let it go.
                    byte[] ra = new byte[8];
                    _session.ReadMemory(r.Rsp, ra);
                    ulong caller = BinaryPrimitives.ReadUInt64LittleEndian(ra);
                    bool fromLinker = linker.Any(m => m.Contains(caller));
                    if (!fromLinker)
                    {
                        _tid = tid;
                        return;
                    }
                    // Step it over the entry: put the byte back, single-threadedly for this thread's
                    // sake, by running the other threads' way: rewind and keep the int3 for others.
                    StepOver(tid, r);
                    continue;
                }
                _session.Continue(tid, SIGTRAP); // someone else's trap: deliver it
                continue;
            }
            ContinueOther(tid);
        }
    }

    /// <summary>Stops every thread for a moment; takes one that hit an entry meanwhile, or else one
    /// blocked in a waiting system call whose stack (unwound with CFI) has no dynamic-linker frame,
    /// no signal frame, and code of the program below the C library's wrappers. The others resume.</summary>
    private bool TakeWaitingThread(List<RemoteModule> modules)
    {
        _session.StopAll(TimeSpan.FromSeconds(10));
        var ours = new HashSet<ulong>(_breakpoints.Keys);
        int chosen = 0;
        foreach (TracedThread t in _session.Threads.Values)
        {
            if (t.Stopped && Ptrace.WIfStopped(t.LastStatus) && Ptrace.WStopSig(t.LastStatus) == SIGTRAP && Ptrace.Event(t.LastStatus) == 0 &&
                ours.Contains(_session.GetRegisters(t.Id).Rip - 1) && IsBreakpointTrap(t.Id))
            {
                chosen = t.Id; // at an entry after all
                break;
            }
        }
        bool inSyscall = false;
        if (chosen == 0)
        {
            RemoteModule[] linker = modules.Where(m => m.IsDynamicLinker).ToArray();
            RemoteModule? libc = modules.FirstOrDefault(m => m.IsLibc);
            var code = new Unwinding.RemoteModules(_pid, _root);
            var unwinder = new Unwinding.StackUnwinder(_pid, code);
            Span<ulong> frames = stackalloc ulong[64];
            foreach (TracedThread t in _session.Threads.Values.ToList())
            {
                if (!t.Stopped) continue;
                UserRegisters r = _session.GetRegisters(t.Id);
                if (!s_waitingSyscalls.Contains((long)r.OrigRax)) continue;
                unwinder.Load(r.Rsp);
                int n = unwinder.Unwind(r.Rip, r.Rsp, r, frames);
                if (n < 3) continue; // too little of the stack to judge
                bool safe = true, program = false;
                for (int i = 0; i < n && safe; i++)
                {
                    ulong a = frames[i];
                    if (linker.Any(m => m.Contains(a)) || IsSignalFrame(code, a)) safe = false;
                    else if (libc is null || !libc.Contains(a)) program = true;
                }
                if (!safe || !program) continue;
                chosen = t.Id;
                inSyscall = true;
                break;
            }
        }
        foreach (TracedThread t in _session.Threads.Values.ToList())
        {
            if (!t.Stopped || t.Id == chosen) continue;
            RewindIfOurs(t.Id, t.LastStatus, ours);
            _session.Continue(t.Id);
        }
        if (chosen == 0) return false;
        _tid = chosen;
        _inSyscall = inSyscall;
        return true;
    }

    private static bool IsSignalFrame(Unwinding.RemoteModules code, ulong address)
    {
        foreach (ulong a in new[] { address, address - 1 })
        {
            Unwinding.CodeMapping? m = code.Find(a);
            if (m?.Cfi.RowAt((ulong)((long)a - m.Bias)) is { SignalFrame: true }) return true;
        }
        return false;
    }

    /// <summary>Lets a thread we do not want past one breakpoint: restores the byte with every
    /// thread stopped, single-steps this one, re-inserts, resumes all.</summary>
    private void StepOver(int tid, UserRegisters r)
    {
        ulong at = r.Rip - 1;
        _session.StopAll(TimeSpan.FromSeconds(10));
        _session.WriteMemory(at, new[] { _breakpoints[at] });
        r.Rip = at;
        _session.SetRegisters(tid, r);
        if (!_session.PtraceThread.Invoke(() => _session.SingleStep(tid))) throw new ProcessExitedException(_pid);
        _session.WriteMemory(at, new byte[] { 0xCC });
        var ours = new HashSet<ulong>(_breakpoints.Keys);
        foreach (TracedThread t in _session.Threads.Values.ToList())
        {
            if (!t.Stopped) continue;
            if (t.Id != tid) RewindIfOurs(t.Id, t.LastStatus, ours);
            _session.Continue(t.Id);
        }
    }

    /// <summary>Before the detach: no thread may leave with one of our SIGTRAPs still to come
    /// (it would kill the process once untraced) or with its rip one byte into an entry. A thread
    /// interrupted just after it trapped reports the interrupt first and the trap later, so the
    /// pending masks are checked and such threads run until they report it.</summary>
    private void DrainPendingTraps()
    {
        if (_removed.Count == 0) return;
        for (int round = 0; round < 10; round++)
        {
            _session.StopAll(TimeSpan.FromSeconds(10));
            var waiting = new HashSet<int>();
            foreach (TracedThread t in _session.Threads.Values.ToList())
            {
                if (t.Id == _tid || !t.Stopped) continue;
                if (RewindIfOurs(t.Id, t.LastStatus, _removed)) continue;
                if (TrapPending(t.Id))
                {
                    waiting.Add(t.Id);
                    _session.Continue(t.Id);
                }
            }
            if (waiting.Count == 0) return;
            var clock = Stopwatch.StartNew();
            while (waiting.Count > 0 && clock.Elapsed < TimeSpan.FromSeconds(2))
            {
                if (_session.WaitAny(TimeSpan.FromMilliseconds(50)) is not (int tid, int status)) continue;
                if (!Ptrace.WIfStopped(status)) { waiting.Remove(tid); continue; }
                if (waiting.Contains(tid) && RewindIfOurs(tid, status, _removed)) { waiting.Remove(tid); continue; }
                ContinueOther(tid);
            }
        }
    }

    private bool TrapPending(int tid)
    {
        string? status = ProcFile.TryReadText(_root.File(_pid, $"task/{tid}/status"), out _);
        if (status is null) return false;
        foreach (string line in status.Split('\n'))
        {
            if (!line.StartsWith("SigPnd:", StringComparison.Ordinal)) continue;
            return ulong.TryParse(line[7..].Trim(), System.Globalization.NumberStyles.HexNumber, null, out ulong mask) && (mask & (1UL << (SIGTRAP - 1))) != 0;
        }
        return false;
    }

    /// <summary>A stop of a thread other than ours during the calls: a late report of one of our
    /// (removed) int3s is rewound; a signal is delivered; anything else just resumes.</summary>
    private void ContinueOther(int tid)
    {
        if (!_session.Threads.TryGetValue(tid, out TracedThread? t) || !t.Stopped) return;
        RewindIfOurs(tid, t.LastStatus, _removed.Count > 0 ? _removed : new HashSet<ulong>(_breakpoints.Keys));
        _session.Continue(tid);
    }

    /// <summary>Calls <paramref name="function"/> on the held thread with its stack pointer at
    /// <paramref name="stackTop"/> and a return address of 0: the return faults (SIGSEGV at rip 0),
    /// which ends the call. Other threads run meanwhile; signals for the held thread wait until
    /// the detach.</summary>
    private ulong Call(UserRegisters baseRegs, ulong function, ulong stackTop, params ulong[] args)
    {
        UserRegisters r = baseRegs;
        ulong sp = (stackTop & ~0xFUL) - 8;
        _session.WriteMemory(sp, new byte[8]);
        r.Rsp = sp;
        r.Rip = function;
        r.Rax = 0;
        r.OrigRax = ulong.MaxValue; // not in a system call: nothing to restart
        r.Eflags &= ~0x400UL;       // DF clear, as the ABI wants at a call
        if (args.Length > 0) r.Rdi = args[0];
        if (args.Length > 1) r.Rsi = args[1];
        if (args.Length > 2) r.Rdx = args[2];
        if (args.Length > 3) r.Rcx = args[3];
        if (args.Length > 4) r.R8 = args[4];
        if (args.Length > 5) r.R9 = args[5];
        _session.SetRegisters(_tid, r);
        _session.Continue(_tid, 0);
        while (true)
        {
            // No cancellation here: a call cannot be abandoned halfway (the thread would return to 0).
            if (_session.WaitAny(TimeSpan.FromMilliseconds(100)) is not (int tid, int status)) continue;
            if (!Ptrace.WIfStopped(status))
            {
                if (tid == _tid || _session.Threads.Count == 0) throw new ProcessExitedException(_pid);
                continue;
            }
            if (tid != _tid)
            {
                ContinueOther(tid);
                continue;
            }
            int sig = Ptrace.WStopSig(status);
            if (Ptrace.Event(status) != 0 || sig == 0)
            {
                _session.Continue(_tid, 0);
                continue;
            }
            UserRegisters now = _session.GetRegisters(_tid);
            if (sig == SIGSEGV && now.Rip == 0)
            {
                _session.DiscardPendingSignal(_tid); // our own return trap: never delivered
                return now.Rax;
            }
            if (sig is SIGSEGV or SIGTRAP or 4 /* SIGILL */ or 7 /* SIGBUS */ or 8 /* SIGFPE */ or 6 /* SIGABRT */)
                throw Failed($"the call at 0x{function:x} in thread {_tid} faulted with signal {sig} at 0x{now.Rip:x}");
            _deferredSignals.Add(sig);
            _session.Continue(_tid, 0);
        }
    }

    private ulong WriteString(ulong address, string s)
    {
        byte[] b = Encoding.UTF8.GetBytes(s + "\0");
        if (b.Length > 4000) throw Failed("argument too long");
        _session.WriteMemory(address, b);
        return address;
    }

    private string ReadString(ulong address)
    {
        if (address == 0) return "(no message)";
        byte[] b = new byte[1024];
        int n = _session.ReadMemory(address, b);
        int end = Array.IndexOf(b, (byte)0, 0, n);
        return Encoding.UTF8.GetString(b, 0, end < 0 ? n : end);
    }

    private LeakToolsException Missing(string what, RemoteModule m) =>
        new(FailureKind.NotSupported, "AgentUnavailable", $"{what} not found in {m.Path} of process {_pid}: the agent cannot be loaded.", _pid);

    private LeakToolsException Failed(string what) =>
        new(FailureKind.SystemError, "AgentInjectionFailed", $"Loading the agent into process {_pid} failed: {what}.", _pid);
}
