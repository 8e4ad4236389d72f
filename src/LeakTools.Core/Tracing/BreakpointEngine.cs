using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using LeakTools.Core.Interop;
using LeakTools.Core.ProcFs;
using LeakTools.Core.Symbols;
using LeakTools.Core.Tracing.Unwinding;

namespace LeakTools.Core.Tracing;

/// <summary>Options of the ptrace allocation tracer.</summary>
public sealed class BreakpointEngineOptions
{
    /// <summary>Most frames per stack (the allocator's entry included), 1..128.</summary>
    public int Depth { get; init; } = 32;

    /// <summary>Modules that hold the allocator (names or paths); null: found automatically.</summary>
    public IReadOnlyList<string>? Modules { get; init; }

    /// <summary>How long to wait for every thread to stop (attach, detach).</summary>
    public TimeSpan StopTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long the tracer polls for the next stop before it sleeps in waitpid: on a
    /// virtual machine a wake-up across CPUs costs tens of microseconds, polling a little avoids it
    /// while the target allocates back to back.</summary>
    public TimeSpan Spin { get; init; } = TimeSpan.FromMicroseconds(300);

    public Action<string>? Verbose { get; init; }
    public Action<string>? Warning { get; init; }
}

/// <summary>A program for launch mode.</summary>
public sealed class LaunchSpec
{
    public required string Program { get; init; }
    public IReadOnlyList<string> Arguments { get; init; } = Array.Empty<string>();
    public required string WorkingDirectory { get; init; }
    /// <summary>The environment (KEY=value); null: the tracer's own.</summary>
    public IReadOnlyList<string>? Environment { get; init; }
    /// <summary>Our descriptors for the program's stdout and stderr (pipe write ends), or -1.</summary>
    public int StdoutFd { get; init; } = -1;
    public int StderrFd { get; init; } = -1;
}

/// <summary>How a tracing session ended.</summary>
public sealed class EngineOutcome
{
    public string Reason { get; set; } = "stopped";
    public bool ProcessEnded { get; set; }
    public int? ExitCode { get; set; }
    public int? Signal { get; set; }
    public bool Exec { get; set; }
}

/// <summary>The ptrace allocation tracer ("memleax done right"). Seizes every thread (threads
/// born later via PTRACE_O_TRACECLONE), detours each allocator entry point into a trampoline in
/// a scratch page mapped into the target near the allocator (see <see cref="Hook"/>): one stop per
/// allocation (at the return, with the arguments saved by the trampoline) and one per free, no
/// single-stepping, safe with any number of threads in the same function. Stacks are unwound
/// with CFI from a bulk read of the stack. Events go to an <see cref="IAllocationEventSink"/>;
/// nested calls (realloc calling malloc inside the allocator) are recognised by a return address
/// in the scratch area and dropped. fork children get their copy of the hooks removed and are let
/// go; vfork children (shared memory) are traced until they exec. Exec or exit of the target ends
/// the session. Detach restores every byte, steps threads out of the trampolines, unmaps the
/// scratch page when no stack still returns into it, and hands back pending signals.
/// Uses waitpid(-1): run it in the helper host, which has no children of its own.</summary>
public sealed unsafe class BreakpointEngine : IAllocationEventSource, IDisposable
{
    private const int SIGTRAP = 5, SIGSTOP = 19, SIGCONT = 18, SIGINT = 2, SIGKILL = 9;
    public const int TraceOptions = Ptrace.PTRACE_O_TRACECLONE | Ptrace.PTRACE_O_TRACEFORK | Ptrace.PTRACE_O_TRACEVFORK
                                    | Ptrace.PTRACE_O_TRACEEXEC | Ptrace.PTRACE_O_TRACEEXIT;

    private readonly BreakpointEngineOptions _options;
    private readonly PtraceThread _thread = new("LeakTools tracer");
    private PtraceSession? _session;
    private readonly int _pid;
    private readonly bool _launched;
    private readonly List<Hook> _hooks = new();
    private readonly Dictionary<ulong, (Hook Hook, TrapKind Kind)> _traps = new();
    private readonly HashSet<int> _forkChildren = new();
    private bool _forkSaid;
    private readonly HashSet<int> _vforkChildren = new();
    private readonly Dictionary<int, int> _earlyStops = new();
    private readonly ulong[] _frames;
    private readonly StackRegistry _stacks = new();
    private StackUnwinder? _unwinder;
    private IAllocationEventSink? _sink;
    private ulong _scratch, _scratchSize, _codeSize, _syscall;
    private FreeLog? _freeLog;
    private ulong _freeRead, _freePublished;
    private readonly HashSet<ulong> _skippedPositions = new();
    private readonly HashSet<ulong> _takenAhead = new();
    private readonly object _drainLock = new();
    private const int PrefetchSlots = 32;
    private readonly byte[] _logBuffer = new byte[64 + PrefetchSlots * FreeLog.SlotSize];
    private ulong _dlBreak;
    private byte _dlBreakOriginal;
    private ulong _entryBreak;
    private byte _entryBreakOriginal;
    private List<AllocatorFunction>? _entryFunctions;
    private volatile bool _stopRequested;
    private int _doorbell;
    private bool _ended, _execd, _detached;
    private long _lastEvent;

    private BreakpointEngine(int pid, bool launched, BreakpointEngineOptions options)
    {
        _pid = pid;
        _launched = launched;
        _options = options;
        _frames = new ulong[Math.Clamp(options.Depth, 1, 128)];
    }

    public string Engine => "Breakpoint";

    /// <summary>The traced process.</summary>
    public int ProcessId => _pid;

    /// <summary>True once the allocator is hooked (launch mode: after libc was loaded).</summary>
    public bool Hooked => _hooks.Count > 0;

    /// <summary>The allocator module in use, and the hooked functions.</summary>
    public string? AllocatorModule { get; private set; }
    public IReadOnlyList<Hook> Hooks => _hooks;

    /// <summary>How the session ended.</summary>
    public EngineOutcome Outcome { get; } = new();

    /// <summary>Called on the tracer thread when the target's main thread starts to exit (its
    /// memory map is still readable: symbolize now).</summary>
    public Action? ProcessExiting { get; set; }

    /// <summary>Called on the tracer thread once the allocator is hooked.</summary>
    public Action? HooksInstalled { get; set; }

    /// <summary>Traps handled and time the target spent stopped in them (for -Verbose).</summary>
    public long TrapCount { get; private set; }
    /// <summary>Frees taken from the free log, and frees that found it full and stopped.</summary>
    public long LoggedFrees { get; private set; }
    public long SlowFrees { get; private set; }
    /// <summary>Time the tracer spent handling stops (the part of each stop that is ours, not the kernel's).</summary>
    public long HandlingNanoseconds { get; private set; }
    public long NestedCount { get; private set; }

    /// <summary>Seizes every thread of <paramref name="pid"/> and hooks its allocator. Throws
    /// ProcessNotFound, AccessDenied, AlreadyTraced, NoAllocatorSymbols...</summary>
    public static BreakpointEngine Attach(int pid, BreakpointEngineOptions options)
    {
        var engine = new BreakpointEngine(pid, launched: false, options);
        try
        {
            engine._thread.Invoke(engine.AttachCore);
            return engine;
        }
        catch
        {
            engine.Dispose();
            throw;
        }
    }

    /// <summary>Starts <paramref name="spec"/> stopped before its exec, seizes it, and hooks the
    /// allocator as soon as it is loaded (before any constructor runs).</summary>
    public static BreakpointEngine Launch(LaunchSpec spec, BreakpointEngineOptions options)
    {
        int pid = StartStopped(spec);
        var engine = new BreakpointEngine(pid, launched: true, options);
        try
        {
            engine._thread.Invoke(() =>
            {
                engine._session = PtraceSession.SeizeChild(pid, TraceOptions, engine._thread);
                engine._session.Adopt(pid, stopped: false);
                Libc.Kill(pid, SIGCONT);
            });
            return engine;
        }
        catch
        {
            Libc.Kill(pid, SIGKILL);
            int st;
            Ptrace.WaitPid(pid, &st, 0);
            engine.Dispose();
            throw;
        }
    }

    private static int StartStopped(LaunchSpec spec)
    {
        // sh stops itself before the exec, so the tracer can seize it first and see the exec.
        var argv = new List<string> { "/bin/sh", "-c", "cd -- \"$1\" || exit 127; shift; kill -STOP $$; exec \"$@\"", "sh", spec.WorkingDirectory, spec.Program };
        argv.AddRange(spec.Arguments);
        var fds = new Dictionary<int, int>();
        if (spec.StdoutFd >= 0) fds[1] = spec.StdoutFd;
        if (spec.StderrFd >= 0) fds[2] = spec.StderrFd;
        int pid = Spawn.Start(argv, fds, spec.Environment);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            int status;
            int r = Ptrace.WaitPid(pid, &status, 2 /* WUNTRACED */ | Ptrace.WNOHANG);
            if (r == pid && Ptrace.WIfStopped(status)) return pid;
            if (r == pid)
            {
                throw new LeakToolsException(FailureKind.SystemError, "LaunchFailed",
                    $"{spec.Program} could not be started (the shell that starts it exited with status {Ptrace.WExitStatus(status)}).", spec.Program);
            }
            if (DateTime.UtcNow > deadline)
            {
                Libc.Kill(pid, SIGKILL);
                throw new LeakToolsException(FailureKind.SystemError, "LaunchFailed", $"{spec.Program} did not start within 30 s.", spec.Program);
            }
            Thread.Sleep(1);
        }
    }

    private PtraceSession Session => _session ?? throw new InvalidOperationException("not attached");

    private void AttachCore()
    {
        List<AllocatorFunction> functions = AllocatorFunctions.Find(_pid, _options.Modules);
        _session = PtraceSession.Seize(_pid, TraceOptions, _thread);
        try
        {
            _session.StopAll(_options.StopTimeout);
            Install(functions);
            foreach (TracedThread t in _session.Threads.Values.ToList())
            {
                if (t.GroupStopped) _session.Listen(t.Id);
                else _session.Resume(t.Id, t.PendingSignal);
            }
        }
        catch
        {
            try { DetachCore(); } catch (LeakToolsException) { }
            throw;
        }
    }

    // ---------------------------------------------------------------- installing

    private void Install(List<AllocatorFunction> functions)
    {
        AllocatorModule = functions[0].Module;
        var planned = new List<(Hook Hook, byte[] Code)>();
        foreach (AllocatorFunction f in functions)
        {
            byte[] code = ReadCode(f.Address, (int)Math.Clamp(f.Size > 0 ? f.Size : 4096, 32, 16384));
            Hook? hook = TrampolineBuilder.Plan(f, code, out string? problem);
            if (hook is null)
            {
                _options.Warning?.Invoke($"{problem}; allocations through {f.Name} are not traced.");
                continue;
            }
            planned.Add((hook, code));
        }
        if (planned.Count == 0)
        {
            throw new LeakToolsException(FailureKind.NotSupported, "NoHookableAllocator",
                $"None of the allocator functions of {AllocatorModule} in process {_pid} can be hooked.", _pid);
        }
        _syscall = FindSyscallInstruction();
        _codeSize = (ulong)((planned.Count * TrampolineBuilder.MaxCodePerHook + 4095) & ~4095);
        // Attach mode logs frees without stopping (launch mode wants every free's stack, for bad frees).
        bool logFrees = !_launched && planned.Any(p => p.Hook.Kind == AllocatorKind.Free);
        _scratchSize = _codeSize + (logFrees ? (ulong)((FreeLog.Size + 4095) & ~4095) : 0);
        _scratch = MapScratch(planned.Select(p => p.Hook.Site).ToList(), _scratchSize);
        if (logFrees) _freeLog = new FreeLog(_scratch + _codeSize);

        ulong at = _scratch;
        var image = new byte[_codeSize];
        foreach (var (hook, code) in planned)
        {
            TrampolineBuilder.Layout(hook, at, code, hook.Kind == AllocatorKind.Free ? _freeLog : null);
            if (hook.End - hook.Entry > TrampolineBuilder.MaxCodePerHook)
                throw new LeakToolsException(FailureKind.SystemError, "TrampolineTooLarge", $"The trampoline of {hook.Function.Name} is too large.", _pid);
            hook.Code.CopyTo(image, (int)(at - _scratch));
            at = (hook.End + 15) & ~15UL;
        }
        Session.WriteMemory(_scratch, image);
        const long PROT_READ = 1, PROT_EXEC = 4;
        long? protect = Session.InjectSyscall(PickInjectionThread(), _syscall, 10 /* mprotect */, _scratch, _codeSize, PROT_READ | PROT_EXEC);
        if (protect != 0)
            throw new LeakToolsException(FailureKind.SystemError, "ScratchProtectFailed", $"mprotect of the trampolines in process {_pid} failed ({protect}).", _pid);

        // Threads stopped inside the bytes a detour replaces continue in the relocated copy.
        foreach (TracedThread t in Session.Threads.Values.Where(t => t.Stopped).ToList())
        {
            UserRegisters regs = Session.GetRegisters(t.Id);
            foreach (var (hook, _) in planned)
            {
                if (!hook.Detour || regs.Rip <= hook.Site || regs.Rip >= hook.Site + (ulong)hook.DisplacedLength) continue;
                int index = Array.IndexOf(hook.OriginalOffsets, (int)(regs.Rip - hook.Site));
                if (index < 0) continue;
                regs.Rip = hook.Body + (ulong)hook.BodyOffsets[index];
                Session.SetRegisters(t.Id, regs);
            }
        }
        foreach (var (hook, _) in planned)
        {
            Session.WriteMemory(hook.Site, hook.Patch);
            _hooks.Add(hook);
            if (hook.EntryTrap != 0) _traps[hook.EntryTrap] = (hook, TrapKind.Entry);
            if (hook.ReturnTrap != 0) _traps[hook.ReturnTrap] = (hook, TrapKind.Return);
            if (hook.SlowTrap != 0) _traps[hook.SlowTrap] = (hook, TrapKind.Entry);
            if (!hook.Detour) _traps[hook.Site] = (hook, TrapKind.Site);
        }
        _unwinder = new StackUnwinder(_pid, new RemoteModules(_pid));
        _options.Verbose?.Invoke($"Hooked {string.Join(", ", _hooks.Select(h => h.Function.Name + (h.Detour ? "" : " (int3)")))} in {AllocatorModule}; trampolines at 0x{_scratch:x}{(_freeLog is null ? "" : ", frees logged without stopping")}.");
        HooksInstalled?.Invoke();
    }

    private byte[] ReadCode(ulong address, int length)
    {
        var buffer = new byte[length];
        int n = Session.ReadMemory(address, buffer);
        if (n < 32) n = Session.ReadMemoryForced(address, buffer);
        return buffer.AsSpan(0, Math.Max(n, 0)).ToArray();
    }

    /// <summary>Every mapping of /proc/PID/maps (anonymous ones too), parsed by ProcFs.</summary>
    private static List<(ulong Start, ulong End, string Perms, string Name)> ReadMaps(int pid)
    {
        string path = ProcRoot.Default.File(pid, "maps");
        int errno = ProcFile.TryRead(path, out ReadOnlySpan<byte> text);
        if (errno != 0) throw ProcErrors.FromErrno(errno, pid, path, existedBefore: true);
        return SmapsParser.ParseMappings(text).Select(m => (m.Start, m.End, m.Permissions, m.Path)).ToList();
    }

    /// <summary>A syscall instruction (0f 05) in executable memory, for injected system calls.</summary>
    private ulong FindSyscallInstruction()
    {
        foreach (var m in ReadMaps(_pid).Where(m => m.Perms.Length > 2 && m.Perms[2] == 'x').OrderBy(m => m.Name == "[vdso]" ? 0 : 1))
        {
            int length = (int)Math.Min(m.End - m.Start, 1 << 20);
            var buffer = new byte[length];
            int n = Session.ReadMemoryForced(m.Start, buffer);
            for (int i = 0; i + 1 < n; i++)
            {
                if (buffer[i] == 0x0f && buffer[i + 1] == 0x05) return m.Start + (ulong)i;
            }
        }
        throw new LeakToolsException(FailureKind.NotSupported, "NoSyscallInstruction", $"Process {_pid} has no syscall instruction in executable memory.", _pid);
    }

    /// <summary>Maps the scratch area with an injected mmap, within ±2 GiB of every hooked site
    /// (the detours' rel32 jumps and the relocated RIP-relative operands must reach).</summary>
    private ulong MapScratch(List<ulong> sites, ulong size)
    {
        ulong lo = sites.Min(), hi = sites.Max();
        const ulong reach = (1UL << 31) - (64UL << 20);
        var maps = ReadMaps(_pid).OrderBy(m => m.Start).ToList();
        var candidates = new List<ulong>();
        ulong previousEnd = 0x10000;
        for (int i = 0; i <= maps.Count; i++)
        {
            ulong gapStart = previousEnd, gapEnd = i < maps.Count ? maps[i].Start : 0x7fff_ffff_0000UL;
            if (i < maps.Count && maps[i].Name == "[stack]") gapEnd = gapEnd > (256UL << 20) ? gapEnd - (256UL << 20) : 0; // leave the stack room to grow
            if (gapEnd > gapStart && gapEnd - gapStart >= size + 0x2000)
            {
                ulong below = (gapEnd - size - 0x1000) & ~0xfffUL;   // just under the next mapping
                ulong above = (gapStart + 0x1000 + 0xfff) & ~0xfffUL; // just above the previous one
                foreach (ulong c in new[] { below, above })
                {
                    if (c >= gapStart && c + size <= gapEnd && Distance(c, hi) < reach && Distance(c + size, lo) < reach) candidates.Add(c);
                }
            }
            if (i < maps.Count) previousEnd = Math.Max(previousEnd, maps[i].End);
        }
        int tid = PickInjectionThread();
        foreach (ulong want in candidates.OrderBy(c => Math.Min(Distance(c, lo), Distance(c, hi))).Take(8))
        {
            const long PROT_READ = 1, PROT_WRITE = 2, MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20, MAP_FIXED_NOREPLACE = 0x100000;
            long? r = Session.InjectSyscall(tid, _syscall, 9 /* mmap */, want, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, ulong.MaxValue, 0);
            if (r is null) throw new ProcessExitedException(_pid);
            if (r < 0 && r > -4096) continue;
            ulong got = (ulong)r.Value;
            if (Distance(got, hi) < reach && Distance(got + size, lo) < reach) return got;
            Session.InjectSyscall(tid, _syscall, 11 /* munmap */, got, size); // an old kernel took the hint as a hint
        }
        throw new LeakToolsException(FailureKind.NotSupported, "NoScratchSpace",
            $"Cannot map the tracer's trampolines within 2 GiB of the allocator in process {_pid}.", _pid);
    }

    private static ulong Distance(ulong a, ulong b) => a > b ? a - b : b - a;

    /// <summary>A stopped thread to run injected system calls in: preferably one stopped in user
    /// code (not inside a system call).</summary>
    private int PickInjectionThread()
    {
        int? any = null;
        foreach (TracedThread t in Session.Threads.Values.Where(t => t.Stopped && !t.GroupStopped).OrderBy(t => t.Id == _pid ? 0 : 1))
        {
            any ??= t.Id;
            if (Session.GetRegisters(t.Id).OrigRax == ulong.MaxValue) return t.Id;
        }
        return any ?? throw new LeakToolsException(FailureKind.ResourceBusy, "NoStoppedThread", $"No thread of process {_pid} is stopped for the tracer.", _pid);
    }

    // ---------------------------------------------------------------- running

    /// <summary>Traces until <see cref="Stop"/>, cancellation, or the target's exit or exec, feeding
    /// <paramref name="sink"/>; then detaches (restoring every byte). Returns how it ended.</summary>
    public EngineOutcome Run(IAllocationEventSink sink, CancellationToken cancel)
    {
        _sink = sink;
        using CancellationTokenRegistration reg = cancel.Register(Stop);
        _thread.Invoke(() =>
        {
            try
            {
                Loop();
            }
            finally
            {
                if (!_detached) DetachCore();
            }
        });
        return Outcome;
    }

    /// <summary>Asks the tracer loop to stop and detach (any thread).</summary>
    public void Stop()
    {
        if (_stopRequested) return;
        _stopRequested = true;
        RingDoorbell();
    }

    /// <summary>Launch mode: ends the program like Ctrl+C (SIGINT), SIGKILL after <paramref name="grace"/>;
    /// the session goes on until it exits, to see its last frees.</summary>
    public void Terminate(TimeSpan grace)
    {
        Libc.Kill(_pid, SIGINT);
        var timer = new Timer(_ => { if (!_ended) Libc.Kill(_pid, SIGKILL); }, null, grace, Timeout.InfiniteTimeSpan);
        GC.KeepAlive(timer);
        _killTimer = timer;
    }

    private Timer? _killTimer;

    /// <summary>Wakes a waitpid(-1) that sleeps: a short-lived child's exit is a wait event.</summary>
    private void RingDoorbell()
    {
        try
        {
            _doorbell = Spawn.Start(new[] { "/bin/true" }, new Dictionary<int, int>());
        }
        catch (LeakToolsException)
        {
            // the loop also wakes on the target's next event
        }
    }

    private void Loop()
    {
        _lastEvent = MonotonicClock.Now;
        long spin = MonotonicClock.FromTimeSpan(_options.Spin);
        while (!_ended && !_stopRequested)
        {
            (int Pid, int Status)? ev = Session.WaitNext(block: false);
            if (ev is null)
            {
                if (MonotonicClock.Now - _lastEvent < spin)
                {
                    Thread.SpinWait(20);
                    continue;
                }
                ev = Session.WaitNext(block: true);
                if (ev is null) continue;
            }
            _lastEvent = MonotonicClock.Now;
            if (ev.Value.Pid == _doorbell) continue;
            Handle(ev.Value.Pid, ev.Value.Status);
            HandlingNanoseconds += MonotonicClock.Now - _lastEvent;
        }
    }

    private void Handle(int pid, int status)
    {
        PtraceSession s = Session;
        if (!Ptrace.WIfStopped(status))
        {
            OnExit(pid, status);
            return;
        }
        if (!s.Threads.ContainsKey(pid))
        {
            if (_forkChildren.Contains(pid))
            {
                if (Ptrace.WIfStopped(status)) ReleaseForkChild(pid);
                else _forkChildren.Remove(pid);
                return;
            }
            if (_vforkChildren.Contains(pid))
            {
                if (!Ptrace.WIfStopped(status)) { _vforkChildren.Remove(pid); return; }
                s.Adopt(pid, stopped: true);
            }
            else
            {
                if (Ptrace.WIfStopped(status)) _earlyStops[pid] = status; // a new thread or fork child before its parent's event
                return;
            }
        }
        int sig = Ptrace.WStopSig(status);
        switch (Ptrace.Event(status))
        {
            case Ptrace.PTRACE_EVENT_CLONE:
            {
                int child = (int)s.EventMessage(pid);
                if (_vforkChildren.Contains(pid)) _vforkChildren.Add(child);
                s.Adopt(child, stopped: false);
                if (_earlyStops.Remove(child, out int early)) Handle(child, early);
                s.Resume(pid, 0);
                return;
            }
            case Ptrace.PTRACE_EVENT_FORK:
            {
                int child = (int)s.EventMessage(pid);
                _forkChildren.Add(child);
                if (_earlyStops.Remove(child)) ReleaseForkChild(child);
                s.Resume(pid, 0);
                return;
            }
            case Ptrace.PTRACE_EVENT_VFORK:
            {
                int child = (int)s.EventMessage(pid);
                _vforkChildren.Add(child);
                if (_earlyStops.Remove(child, out int early))
                {
                    s.Adopt(child, stopped: true);
                    Handle(child, early);
                }
                s.Resume(pid, 0);
                return;
            }
            case Ptrace.PTRACE_EVENT_EXEC:
                if (_vforkChildren.Remove(pid))
                {
                    s.DetachOne(pid, 0); // a new program: none of our bytes in it
                    return;
                }
                if (_launched && !Hooked)
                {
                    OnLaunchExec(pid);
                    return;
                }
                _execd = true;
                _ended = true;
                Outcome.Exec = true;
                Outcome.Reason = $"process {_pid} executed a new program ({ProcFields.Link(ProcRoot.Default.File(_pid, "exe")) ?? "?"}); tracing ended";
                return;
            case Ptrace.PTRACE_EVENT_EXIT:
                if (pid == _pid && Hooked && !_vforkChildren.Contains(pid)) ProcessExiting?.Invoke();
                s.Resume(pid, 0);
                return;
            case Ptrace.PTRACE_EVENT_STOP:
                if (sig is SIGSTOP or 20 or 21 or 22) s.Listen(pid); // group-stop: stay stopped, as without us
                else s.Resume(pid, 0);
                return;
        }
        if (sig != SIGTRAP)
        {
            s.Resume(pid, sig); // the target's own signal
            return;
        }
        UserRegisters regs = s.GetRegisters(pid);
        if (_traps.TryGetValue(regs.Rip - 1, out var trap))
        {
            OnTrap(pid, regs, trap.Hook, trap.Kind);
            return;
        }
        if (_dlBreak != 0 && regs.Rip - 1 == _dlBreak)
        {
            OnLoaderBreak(pid, regs);
            return;
        }
        if (_entryBreak != 0 && regs.Rip - 1 == _entryBreak)
        {
            OnEntryBreak(pid, regs);
            return;
        }
        s.Resume(pid, SIGTRAP); // not ours
    }

    private void OnExit(int pid, int status)
    {
        PtraceSession s = Session;
        s.Forget(pid);
        _vforkChildren.Remove(pid);
        _forkChildren.Remove(pid);
        if (pid != _pid) return;
        _ended = true;
        Outcome.ProcessEnded = true;
        if (Ptrace.WIfExited(status))
        {
            Outcome.ExitCode = Ptrace.WExitStatus(status);
            Outcome.Reason = $"process {_pid} exited with status {Outcome.ExitCode}";
        }
        else
        {
            Outcome.Signal = Ptrace.WTermSig(status);
            Outcome.Reason = $"process {_pid} was killed by signal {Outcome.Signal}";
        }
    }

    // ---------------------------------------------------------------- traps

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void OnTrap(int tid, UserRegisters regs, Hook hook, TrapKind kind)
    {
        TrapCount++;
        StackUnwinder unwinder = _unwinder!;
        long now = MonotonicClock.Now;
        ulong rsp = regs.Rsp;
        if (_freeLog is FreeLog log)
        {
            // One process_vm_readv for the stack and the free log. Frees logged before this stop
            // happened before it: account them first (a malloc may be returning one of those blocks).
            ulong from;
            lock (_drainLock) from = _freeRead;
            int run = (int)Math.Min((ulong)PrefetchSlots, FreeLog.Capacity - (from & (FreeLog.Capacity - 1)));
            bool got = unwinder.Load(rsp, _logBuffer, log.IndexAddress, 16, log.SlotAddress(from), 64, run * FreeLog.SlotSize);
            DrainFrees(got ? _logBuffer : null, publish: false, prefetchedFrom: from, prefetchedSlots: run);
            if (regs.Rip - 1 == hook.SlowTrap)
            {
                lock (_drainLock) _skippedPositions.Add(regs.Rax); // the log was full: this free is recorded below
                SlowFrees++;
            }
        }
        else
        {
            unwinder.Load(rsp);
        }
        if (kind == TrapKind.Return)
        {
            ulong entryRsp = rsp + 8UL * (ulong)hook.Slots;
            unwinder.ReadWord(entryRsp, out ulong ra);
            unwinder.ReadWord(entryRsp - 8, out ulong a0);
            unwinder.ReadWord(entryRsp - 16, out ulong a1);
            unwinder.ReadWord(entryRsp - 24, out ulong a2);
            int stackId = Stack(hook, ra, entryRsp + 8, regs);
            if (stackId > 0)
            {
                ulong result = regs.Rax;
                switch (hook.Kind)
                {
                    case AllocatorKind.Malloc: Allocated(result, a0, stackId, tid, now); break;
                    case AllocatorKind.Calloc: Allocated(result, a0 * a1, stackId, tid, now); break;
                    case AllocatorKind.Memalign: Allocated(result, a1, stackId, tid, now); break;
                    case AllocatorKind.PosixMemalign:
                        if ((int)result == 0 && unwinder.ReadWord(a0, out ulong block)) Allocated(block, a2, stackId, tid, now);
                        break;
                    case AllocatorKind.Realloc:
                    case AllocatorKind.ReallocArray:
                    {
                        ulong size = hook.Kind == AllocatorKind.Realloc ? a1 : a1 * a2;
                        if (result != 0) Allocated(result, size, stackId, tid, now);
                        else if (size != 0 && a0 != 0) Allocated(a0, 0, stackId, tid, now); // failed: the old block lives on (freed at entry)
                        break;
                    }
                }
            }
            Session.Resume(tid, 0);
            return;
        }

        if (kind == TrapKind.Site && !Hook.HasEntryTrap(hook.Kind))
        {
            regs.Rip = hook.Stub; // int3 in place of a detour: on into the trampoline, which records at the return
            Session.SetRegisters(tid, regs);
            Session.Resume(tid, 0);
            return;
        }
        // Entry (trampoline) or Site (int3 at the function): arguments in registers, [rsp] = return address.
        unwinder.ReadWord(rsp, out ulong returnAddress);
        int id = Stack(hook, returnAddress, rsp + 8, regs);
        if (id > 0 && hook.Kind is AllocatorKind.Free or AllocatorKind.Realloc or AllocatorKind.ReallocArray && regs.Rdi != 0)
        {
            // realloc's old block is freed here, before the call: no other thread can get it yet.
            _sink!.OnFree(regs.Rdi, id, tid, now);
        }
        if (kind == TrapKind.Site)
        {
            regs.Rip = hook.Kind == AllocatorKind.Free ? hook.Body : hook.EntryTrap != 0 ? hook.EntryTrap + 1 : hook.Stub;
            Session.SetRegisters(tid, regs);
        }
        Session.Resume(tid, 0);
    }

    /// <summary>Takes the frees the target logged since the last call (any thread): the ticker
    /// calls it before judging expiry. Positions reserved but not written yet (a thread between its
    /// xadd and its store) are taken later.</summary>
    public void DrainFrees() => DrainFrees(null, publish: true, 0, 0);

    void IAllocationEventSource.Flush() => DrainFrees();

    /// <param name="prefetched">The log's header and first slots from the read index, when the
    /// caller read them together with the stack.</param>
    /// <param name="publish">Write the read index back even if it moved only a little.</param>
    private void DrainFrees(byte[]? prefetched, bool publish, ulong prefetchedFrom, int prefetchedSlots)
    {
        FreeLog? log = _freeLog;
        IAllocationEventSink? sink = _sink;
        if (log is null || sink is null || _detached) return;
        lock (_drainLock)
        {
            byte[] head = prefetched ?? new byte[64];
            if (prefetched is null && ProcessMemoryAccess.Read(_pid, log.IndexAddress, head.AsSpan(0, 64)) != 64) return;
            ulong index = BitConverter.ToUInt64(head, 0);
            ulong first = _freeRead;
            ulong count = index > first ? Math.Min(index - first, (ulong)FreeLog.Capacity) : 0;
            if (count > 0)
            {
                // Prefetched slots belong to the positions the caller expected (the read index at that time).
                byte[] slots;
                if (prefetched is not null && prefetchedFrom == first && count <= (ulong)prefetchedSlots)
                {
                    slots = prefetched.AsSpan(64, (int)count * FreeLog.SlotSize).ToArray();
                }
                else
                {
                    slots = new byte[count * FreeLog.SlotSize];
                    ulong pos = 0;
                    while (pos < count)
                    {
                        ulong slot = (first + pos) & (FreeLog.Capacity - 1);
                        int run = (int)Math.Min(count - pos, (ulong)FreeLog.Capacity - slot);
                        if (ProcessMemoryAccess.Read(_pid, log.SlotsAddress + slot * FreeLog.SlotSize, slots.AsSpan((int)pos * FreeLog.SlotSize, run * FreeLog.SlotSize)) != run * FreeLog.SlotSize) return;
                        pos += (ulong)run;
                    }
                }
                long now = MonotonicClock.Now;
                bool advancing = true;
                for (ulong i = 0; i < count; i++)
                {
                    ulong position = first + i;
                    ulong tag = BitConverter.ToUInt64(slots, (int)i * FreeLog.SlotSize);
                    bool taken = _skippedPositions.Remove(position) || _takenAhead.Contains(position);
                    if (!taken && tag == position + 1)
                    {
                        sink.OnFree(BitConverter.ToUInt64(slots, (int)i * FreeLog.SlotSize + 8), 0, 0, now);
                        LoggedFrees++;
                        taken = true;
                        if (!advancing) _takenAhead.Add(position);
                    }
                    if (advancing && taken)
                    {
                        _takenAhead.Remove(position);
                        _freeRead = position + 1;
                    }
                    else
                    {
                        advancing = false;
                    }
                }
            }
            if (_freeRead != _freePublished && (publish || _freeRead - _freePublished >= FreeLog.Capacity / 4))
            {
                Span<byte> eight = stackalloc byte[8];
                BitConverter.TryWriteBytes(eight, _freeRead);
                if (ProcessMemoryWriter.WriteVm(_pid, log.ReadAddress, eight)) _freePublished = _freeRead;
            }
        }
    }

    private void Allocated(ulong address, ulong size, int stackId, int tid, long now)
    {
        if (address == 0) return;
        _sink!.OnAllocation(address, (long)Math.Min(size, long.MaxValue), stackId, tid, now);
    }

    /// <summary>Unwinds and interns the stack; 0 when the call is nested inside another hooked
    /// call (a return address in the scratch area).</summary>
    private int Stack(Hook hook, ulong returnAddress, ulong callerSp, in UserRegisters regs)
    {
        Span<ulong> frames = _frames;
        frames[0] = hook.Site;
        int n = 1;
        if (frames.Length > 1) n += _unwinder!.Unwind(returnAddress, callerSp, regs, frames[1..]);
        for (int i = 1; i < n; i++)
        {
            if (frames[i] >= _scratch && frames[i] < _scratch + _scratchSize)
            {
                NestedCount++;
                return 0;
            }
        }
        var (id, isNew) = _stacks.Intern(frames[..n]);
        if (isNew) _sink!.OnStack(id, frames[..n]);
        return id;
    }

    // ---------------------------------------------------------------- launch mode

    private void OnLaunchExec(int pid)
    {
        // The program is loaded; the dynamic loader has not run yet.
        List<AllocatorFunction>? functions = TryFindAllocator();
        if (functions is not null)
        {
            // A static binary (or an allocator in the executable itself). Nothing can be injected at
            // the exec stop: the thread is still inside execve, whose return value overwrites rax and
            // whose syscall-exit step report comes before any instruction runs. Hook at the entry point.
            ulong entry = EntryPoint(pid);
            byte[] original = ReadCode(entry, 1);
            if (original.Length != 1)
                throw new LeakToolsException(FailureKind.SystemError, "EntryPointUnreadable", $"Cannot read the entry point 0x{entry:x} of process {_pid}.", _pid);
            _entryBreak = entry;
            _entryBreakOriginal = original[0];
            _entryFunctions = functions;
            Session.WriteMemory(entry, new byte[] { 0xcc });
            Session.Resume(pid, 0);
            return;
        }
        var maps = ReadMaps(_pid);
        var loader = maps.FirstOrDefault(m => m.Name.StartsWith('/') && AllocatorFunctions.IsDynamicLoader(m.Name));
        if (loader.Name is null)
        {
            AllocatorFunctions.Find(_pid, _options.Modules); // throws NoAllocatorSymbols naming the modules searched
        }
        ulong? address = null;
        List<ModuleMapping> modules = ProcessSymbolizer.ParseMaps(File.ReadAllText(ProcRoot.Default.File(_pid, "maps")), ProcRoot.Default, _pid);
        using (ElfFile elf = ElfFile.Open(loader.Name!))
        {
            ElfSymbol? sym = ElfSymbolReader.Read(elf, plt: false).FirstOrDefault(x => x.Name.StartsWith("_dl_debug_state", StringComparison.Ordinal) && x.IsDefined);
            if (sym is not null) address = AllocatorFunctions.RuntimeAddress(elf, sym.Address, modules.Where(m => m.Path == loader.Name));
        }
        byte[] code = address is ulong a ? ReadCode(a, 8) : Array.Empty<byte>();
        bool plainReturn = code.Length >= 1 && code[0] == 0xc3;
        if (address is null || !plainReturn)
        {
            throw new LeakToolsException(FailureKind.NotSupported, "LoaderUnsupported",
                $"Cannot follow the dynamic loader {loader.Name} of process {_pid} (no plain _dl_debug_state); attach with -Id once the program runs.", _pid);
        }
        _dlBreak = address.Value;
        _dlBreakOriginal = code[0];
        Session.WriteMemory(_dlBreak, new byte[] { 0xcc });
        Session.Resume(pid, 0);
    }

    /// <summary>The program's entry point (AT_ENTRY of the process's auxiliary vector).</summary>
    private ulong EntryPoint(int pid)
    {
        byte[] auxv = File.ReadAllBytes(ProcRoot.Default.File(pid, "auxv"));
        for (int i = 0; i + 16 <= auxv.Length; i += 16)
        {
            ulong key = BitConverter.ToUInt64(auxv, i);
            if (key == 0) break;
            if (key == 9 /* AT_ENTRY */) return BitConverter.ToUInt64(auxv, i + 8);
        }
        throw new LeakToolsException(FailureKind.SystemError, "EntryPointUnknown", $"Process {_pid} has no AT_ENTRY in its auxiliary vector.", _pid);
    }

    /// <summary>The program reached its entry point (static binary): undo the int3, run the
    /// instruction again, and hook the allocator now that injected calls work.</summary>
    private void OnEntryBreak(int tid, UserRegisters regs)
    {
        Session.WriteMemory(_entryBreak, new[] { _entryBreakOriginal });
        regs.Rip = _entryBreak;
        Session.SetRegisters(tid, regs);
        _entryBreak = 0;
        List<AllocatorFunction> functions = _entryFunctions!;
        _entryFunctions = null;
        Install(functions);
        Session.Resume(tid, 0);
    }

    private List<AllocatorFunction>? TryFindAllocator()
    {
        try
        {
            return AllocatorFunctions.Find(_pid, _options.Modules);
        }
        catch (LeakToolsException ex) when (ex.ErrorId is "NoAllocatorSymbols" or "AllocatorModuleNotFound")
        {
            return null;
        }
    }

    /// <summary>The loader announced a change of its link map (r_brk): once the allocator's module
    /// is there, hook it (constructors have not run yet).</summary>
    private void OnLoaderBreak(int tid, UserRegisters regs)
    {
        // _dl_debug_state is a bare ret: do it here.
        ulong ra = 0;
        Span<byte> b = stackalloc byte[8];
        if (Session.ReadMemory(regs.Rsp, b) == 8) ra = BitConverter.ToUInt64(b);
        regs.Rip = ra;
        regs.Rsp += 8;
        Session.SetRegisters(tid, regs);
        List<AllocatorFunction>? functions = TryFindAllocator();
        if (functions is not null)
        {
            Session.WriteMemory(_dlBreak, new[] { _dlBreakOriginal });
            _dlBreak = 0;
            Install(functions);
        }
        Session.Resume(tid, 0);
    }

    // ---------------------------------------------------------------- fork children

    /// <summary>A fork child has a copy of our patches: remove them (and the scratch page) and let it go.</summary>
    private void ReleaseForkChild(int child)
    {
        _forkChildren.Remove(child);
        foreach (Hook h in _hooks) ProcessMemoryWriter.Write(child, h.Site, h.Original);
        if (_dlBreak != 0) ProcessMemoryWriter.Write(child, _dlBreak, new[] { _dlBreakOriginal });
        if (_entryBreak != 0) ProcessMemoryWriter.Write(child, _entryBreak, new[] { _entryBreakOriginal });
        PtraceSession s = Session;
        s.Adopt(child, stopped: true);
        if (_scratch != 0 && !StacksReferToScratch(new[] { child }, child)) s.InjectSyscall(child, _syscall, 11 /* munmap */, _scratch, _scratchSize);
        s.DetachOne(child, 0);
        _options.Verbose?.Invoke($"Process {_pid} forked child {child}: its copy of the hooks was removed and it runs untraced.");
        if (!_forkSaid)
        {
            _forkSaid = true; // once per session, as the agent engine says it
            _options.Warning?.Invoke($"Process {_pid} forked: its children are not traced (their copy of the hooks is removed). Further forks are not reported.");
        }
    }

    // ---------------------------------------------------------------- detaching

    /// <summary>Stops every thread, moves any thread out of the trampolines, restores the original
    /// bytes, unmaps the scratch page when no stack still returns into it, and detaches.</summary>
    private void DetachCore()
    {
        if (_detached || _session is null) return;
        _detached = true;
        _killTimer?.Dispose();
        PtraceSession s = _session;
        if (_execd || (_ended && Outcome.ProcessEnded))
        {
            s.Detach();
            return;
        }
        try
        {
            StopEverything();
            if (_hooks.Count > 0 || _dlBreak != 0 || _entryBreak != 0) Unhook();
        }
        finally
        {
            s.Detach();
            _options.Verbose?.Invoke($"Detached from process {_pid}: {TrapCount:N0} traps handled ({(TrapCount == 0 ? 0 : HandlingNanoseconds / 1000.0 / TrapCount):N1} µs of tracer work each), {NestedCount:N0} nested calls skipped{(_freeLog is null ? "" : $", {LoggedFrees:N0} frees logged without a stop, {SlowFrees:N0} found the log full")}.");
        }
    }

    private void StopEverything()
    {
        PtraceSession s = Session;
        var deadline = MonotonicClock.Now + MonotonicClock.FromTimeSpan(_options.StopTimeout);
        foreach (TracedThread t in s.Threads.Values.Where(t => !t.Stopped).ToList()) s.Interrupt(t.Id);
        while (s.Threads.Values.Any(t => !t.Stopped) && MonotonicClock.Now < deadline)
        {
            (int Pid, int Status)? ev = s.WaitNext(block: false);
            if (ev is null)
            {
                Thread.Sleep(1);
                continue;
            }
            var (pid, status) = ev.Value;
            if (pid == _doorbell) continue;
            if (!s.Threads.ContainsKey(pid))
            {
                if (_forkChildren.Contains(pid) && Ptrace.WIfStopped(status)) ReleaseForkChild(pid);
                else if (_vforkChildren.Contains(pid) && Ptrace.WIfStopped(status)) s.Adopt(pid, stopped: true);
                else if (Ptrace.WIfStopped(status)) _earlyStops[pid] = status;
                continue;
            }
            if (!Ptrace.WIfStopped(status)) { if (pid == _pid) { Outcome.ProcessEnded = true; _ended = true; } continue; }
            int ev2 = Ptrace.Event(status);
            if (ev2 is Ptrace.PTRACE_EVENT_FORK or Ptrace.PTRACE_EVENT_VFORK or Ptrace.PTRACE_EVENT_CLONE)
            {
                int child = (int)s.EventMessage(pid);
                if (ev2 == Ptrace.PTRACE_EVENT_FORK)
                {
                    _forkChildren.Add(child);
                    if (_earlyStops.Remove(child)) ReleaseForkChild(child);
                }
                else
                {
                    if (ev2 == Ptrace.PTRACE_EVENT_VFORK) _vforkChildren.Add(child);
                    s.Adopt(child, stopped: _earlyStops.Remove(child));
                    if (!s.Threads[child].Stopped) s.Interrupt(child);
                }
            }
            if (ev2 == Ptrace.PTRACE_EVENT_EXEC && !_vforkChildren.Contains(pid)) { _execd = true; _ended = true; }
            if (ev2 == Ptrace.PTRACE_EVENT_EXEC && _vforkChildren.Remove(pid)) s.DetachOne(pid, 0);
        }
        foreach (int pid in _earlyStops.Keys.ToList())
        {
            if (_forkChildren.Contains(pid)) { _earlyStops.Remove(pid); ReleaseForkChild(pid); }
        }
    }

    private void Unhook()
    {
        PtraceSession s = Session;
        if (_execd) return;
        DrainFrees();
        foreach (TracedThread t in s.Threads.Values.Where(t => t.Stopped).ToList()) MoveOutOfTrampolines(t.Id);
        foreach (Hook h in _hooks) s.WriteMemory(h.Site, h.Original);
        if (_dlBreak != 0) s.WriteMemory(_dlBreak, new[] { _dlBreakOriginal });
        if (_entryBreak != 0) s.WriteMemory(_entryBreak, new[] { _entryBreakOriginal });
        if (_scratch == 0) return;
        // Any thread still inside an allocator returns through its trampoline: make the traps harmless.
        foreach (Hook h in _hooks)
        {
            if (h.EntryTrap != 0) s.WriteMemory(h.EntryTrap, new byte[] { 0x90 });
            if (h.ReturnTrap != 0) s.WriteMemory(h.ReturnTrap, new byte[] { 0x90 });
            if (h.SlowTrap != 0) s.WriteMemory(h.SlowTrap, new byte[] { 0x90 });
        }
        var tids = s.Threads.Values.Where(t => t.Stopped).Select(t => t.Id).ToList();
        if (tids.Count > 0 && !StacksReferToScratch(tids, _pid))
        {
            s.InjectSyscall(tids.Contains(_pid) ? _pid : tids[0], _syscall, 11 /* munmap */, _scratch, _scratchSize);
        }
        else
        {
            _options.Verbose?.Invoke($"A thread of process {_pid} is inside the allocator: its 4 KiB trampoline page at 0x{_scratch:x} stays mapped (harmless, no traps left).");
        }
    }

    /// <summary>Puts a stopped thread whose RIP is in a trampoline (or just after an int3 at a
    /// site) where it would be without us.</summary>
    private void MoveOutOfTrampolines(int tid)
    {
        PtraceSession s = Session;
        for (int step = 0; step < 32; step++)
        {
            UserRegisters regs = s.GetRegisters(tid);
            ulong rip = regs.Rip;
            Hook? site = _hooks.FirstOrDefault(h => !h.Detour && rip == h.Site + 1);
            if (site is not null)
            {
                regs.Rip = site.Site; // re-executes the restored instruction
                s.SetRegisters(tid, regs);
                return;
            }
            Hook? h = _hooks.FirstOrDefault(h => rip >= h.Entry && rip <= h.End);
            if (h is null) return;
            if (h.EntryTrap != 0 && rip == h.EntryTrap + 1 || h.Kind == AllocatorKind.Free && rip == h.Entry + 1 || rip == h.Entry
                || h.SlowTrap != 0 && rip >= h.Entry && rip < h.Body)
            {
                regs.Rip = h.Site;
            }
            else if (h.Stub != 0 && rip >= h.Stub && rip <= h.Call)
            {
                int pushed = (int)Math.Min(rip - h.Stub, (ulong)h.Pushes);
                if (rip == h.Call) pushed = h.Slots;
                regs.Rsp += 8UL * (ulong)pushed;
                regs.Rip = h.Site;
            }
            else if (h.ReturnTrap != 0 && rip >= h.ReturnTrap && rip < h.Body)
            {
                // at the return trap, the add or the ret: finish the return to the caller.
                if (rip <= h.ReturnTrap + 1) regs.Rsp += 8UL * (ulong)h.Slots;
                Span<byte> b = stackalloc byte[8];
                s.ReadMemory(regs.Rsp, b);
                regs.Rip = BitConverter.ToUInt64(b);
                regs.Rsp += 8;
            }
            else
            {
                // In the relocated instructions: run them until the jump back.
                if (!s.SingleStep(tid)) return;
                continue;
            }
            s.SetRegisters(tid, regs);
            return;
        }
    }

    /// <summary>True when a live stack of <paramref name="tids"/> holds a return address into
    /// the scratch area (a thread inside an allocator called through its trampoline).</summary>
    private bool StacksReferToScratch(IEnumerable<int> tids, int pid)
    {
        var returnTraps = new HashSet<ulong>(_hooks.Where(h => h.ReturnTrap != 0).Select(h => h.ReturnTrap));
        if (returnTraps.Count == 0) return false;
        var maps = ReadMaps(pid);
        foreach (int tid in tids)
        {
            UserRegisters regs = Session.GetRegisters(tid);
            var m = maps.FirstOrDefault(m => regs.Rsp >= m.Start && regs.Rsp < m.End);
            if (m.End == 0) return true;
            ulong length = Math.Min(m.End - regs.Rsp, 8UL << 20);
            var buffer = new byte[length];
            int n = ProcessMemoryAccess.Read(pid, regs.Rsp, buffer);
            for (int i = 0; i + 8 <= n; i += 8)
            {
                if (returnTraps.Contains(BitConverter.ToUInt64(buffer, i))) return true;
            }
        }
        return false;
    }

    public void Dispose()
    {
        try
        {
            if (_session is not null) _thread.Invoke(() => { if (!_detached) DetachCore(); });
        }
        finally
        {
            _killTimer?.Dispose();
            _session?.Dispose();
            _thread.Dispose();
        }
    }
}

/// <summary>Distinct call stacks by content: dense ids from 1.</summary>
internal sealed class StackRegistry
{
    private readonly Dictionary<ulong, (ulong[] Frames, int Id)> _byHash = new();
    private int _next;

    public int Count => _next;

    public (int Id, bool IsNew) Intern(ReadOnlySpan<ulong> frames)
    {
        ulong hash = Hash(frames);
        while (true)
        {
            if (_byHash.TryGetValue(hash, out var known))
            {
                if (frames.SequenceEqual(known.Frames)) return (known.Id, false);
                hash++;
                continue;
            }
            int id = ++_next;
            _byHash[hash] = (frames.ToArray(), id);
            return (id, true);
        }
    }

    private static ulong Hash(ReadOnlySpan<ulong> frames)
    {
        ulong h = 0xcbf29ce484222325UL ^ (ulong)frames.Length;
        foreach (ulong f in frames)
        {
            h ^= f;
            h *= 0x100000001b3UL;
            h ^= h >> 29;
        }
        return h;
    }
}
