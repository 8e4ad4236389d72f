using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using LeakTools.Core.Interop;
using LeakTools.Core.ProcFs;

namespace LeakTools.Core.Dumps;

/// <summary>The seed's way, done thoroughly: lift the target's RLIMIT_CORE with prlimit(2) (up to
/// its hard limit unless we hold CAP_SYS_RESOURCE), check coredump_filter and core_pattern, send
/// SIGABRT, then find the dump where core_pattern sent it (a file, abrt's spool,
/// systemd-coredump's directory) and wait until it is complete. Says what blocked it otherwise.</summary>
public sealed unsafe class CoreAborter
{
    private const int SIGABRT = 6;
    private const int CAP_SYS_RESOURCE = 24;
    private readonly ProcRoot _root;
    private readonly Action<string>? _verbose;
    private readonly Action<string>? _warning;

    public CoreAborter(ProcRoot? root = null, Action<string>? verbose = null, Action<string>? warning = null)
    {
        _root = root ?? ProcRoot.Default;
        _verbose = verbose;
        _warning = warning;
    }

    /// <summary>Where to look; tests point these at temporary folders.</summary>
    public string? CorePatternOverride { get; set; }
    public string AbrtSpool { get; set; } = CoreDumpCatalog.DefaultAbrtSpool;
    public string SystemdCoredumpPath { get; set; } = CoreDumpCatalog.DefaultSystemdCoredumpPath;

    public CoreDump Abort(ProcessIdentity identity, TimeSpan timeout, CancellationToken cancel = default)
    {
        int pid = identity.Id;
        if (identity.Status.IsKernelThread)
            throw new LeakToolsException(FailureKind.NotSupported, "KernelThread", $"Process {pid} ({identity.Name}) is a kernel thread: it cannot be aborted.", pid);
        if (identity.Status.IsZombie)
            throw new LeakToolsException(FailureKind.ProcessExited, "ProcessIsZombie", $"Process {pid} ({identity.Name}) has already exited (zombie).", pid);

        string pattern = (CorePatternOverride ?? ProcFile.TryReadText(_root.File("sys/kernel/core_pattern"), out _) ?? "core").Trim();
        CoreHandler handler = CorePattern.Classify(pattern);
        _verbose?.Invoke($"core_pattern is '{pattern}' ({handler}).");
        uint filter = CoredumpFilter.Read(pid, _root);
        if ((filter & CoredumpFilter.AnonPrivate) == 0)
            _warning?.Invoke($"coredump_filter of process {pid} is 0x{filter:x}: private anonymous memory (the heap) will not be in the core. " +
                             $"Set it with: echo 0x33 > /proc/{pid}/coredump_filter");
        long estimate = EstimateCoreBytes(pid, filter);
        string cwd = ProcFields.Link(_root.File(pid, "cwd")) ?? "/";
        string? exe = ProcFields.Link(_root.File(pid, "exe"));

        // Checks that would make the kernel or the handler drop the core: fail before killing anything.
        if (handler == CoreHandler.OtherPipe)
            throw Blocked("CoreHandlerUnknown", $"core_pattern pipes cores to {CorePattern.PipeProgram(pattern)}, which LeakTools does not know: " +
                "it cannot tell where the dump would land, so process {0} was not aborted. Use -Method Snapshot instead.", pid);
        if (handler == CoreHandler.SystemdCoredump && !File.Exists("/run/systemd/coredump") && CorePatternOverride is null)
            throw Blocked("CoreHandlerNotRunning", "core_pattern pipes cores to systemd-coredump, but its socket /run/systemd/coredump does not exist " +
                "(systemd is not running): the kernel would lose the core. Process {0} was not aborted.", pid);
        if (handler == CoreHandler.Abrt && CorePattern.PipeProgram(pattern) is string hook && hook.StartsWith('/') && !File.Exists(hook) && CorePatternOverride is null)
            throw Blocked("CoreHandlerNotRunning", $"core_pattern pipes cores to {hook}, which does not exist: the core would be lost. Process {{0}} was not aborted.", pid);

        ulong? limit = RaiseCoreLimit(pid, identity.Name, estimate, handler);

        var context = new CorePatternContext
        {
            Pid = pid,
            GlobalPid = pid,
            Tid = pid,
            Uid = identity.Status.RealUid,
            Gid = ProcFields.StatusFirst(ProcFile.TryReadText(_root.File(pid, "status"), out _) ?? "", "Gid"),
            Signal = SIGABRT,
            Comm = identity.Comm,
            ExecutablePath = exe,
            Hostname = Environment.MachineName,
            CoreLimit = limit,
            WorkingDirectory = cwd,
            UsesPid = ProcFile.TryReadText(_root.File("sys/kernel/core_uses_pid"), out _)?.Trim() == "1",
        };
        Regex? fileRegex = null;
        string fileDir = "/";
        if (handler == CoreHandler.File)
        {
            string expected = CorePattern.Expand(pattern, context);
            string dir = Path.GetDirectoryName(expected) ?? "/";
            fileDir = dir;
            if (!Directory.Exists(dir))
                throw Blocked("CoreDirectoryMissing", $"core_pattern puts the core at {expected}, but {dir} does not exist. Process {{0}} was not aborted.", pid);
            long? free = LibcFiles.FreeBytes(dir);
            if (free is not null && free < estimate)
                throw new LeakToolsException(FailureKind.WriteFailed, "DestinationFull",
                    $"The core of process {pid} needs about {estimate >> 20} MiB, but {dir} has {free >> 20} MiB free: the kernel would write a truncated core. Process {pid} was not aborted.", pid);
            fileRegex = CorePattern.ToRegex(pattern, context);
            _verbose?.Invoke($"The kernel will write {expected}.");
        }
        string status = ProcFile.TryReadText(_root.File(pid, "status"), out _) ?? "";
        ulong abrtBit = 1UL << (SIGABRT - 1);
        if (((ProcFields.StatusHex(status, "SigCgt") | ProcFields.StatusHex(status, "SigBlk") | ProcFields.StatusHex(status, "SigIgn")) & abrtBit) != 0)
            _warning?.Invoke($"Process {pid} handles, blocks or ignores SIGABRT itself: it may not dump a core.");

        DateTime sent = DateTime.Now;
        if (Libc.Kill(pid, SIGABRT) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno == Errno.ESRCH) throw new ProcessExitedException(pid);
            throw new LeakToolsException(FailureKind.AccessDenied, "AccessDenied", $"Cannot send SIGABRT to process {pid}: {Errno.Describe(errno)}.", pid);
        }
        _verbose?.Invoke($"Sent SIGABRT to process {pid} ({identity.Name}); waiting up to {timeout.TotalSeconds:0} s for the dump.");

        var clock = Stopwatch.StartNew();
        bool ended = WaitForExit(pid, timeout, cancel);
        if (!ended)
            throw new LeakToolsException(FailureKind.ResourceBusy, "ProcessSurvivedAbort",
                $"Process {pid} ({identity.Name}) is still running {timeout.TotalSeconds:0} s after SIGABRT: it handles or blocks the signal, or is stuck writing its core.", pid);

        var catalog = new CoreDumpCatalog(_warning);
        TimeSpan left = timeout - clock.Elapsed;
        if (left < TimeSpan.FromSeconds(2)) left = TimeSpan.FromSeconds(2);
        CoreDump? dump = handler switch
        {
            CoreHandler.File => WaitFor(() => FindFile(fileRegex!, fileDir, sent, catalog), left, cancel),
            CoreHandler.Abrt => WaitFor(() => FindAbrt(pid, sent, catalog), left, cancel),
            _ => WaitFor(() => FindSystemd(pid, sent, catalog), left, cancel),
        };
        if (dump is null) throw NotFound(pid, identity.Name, handler, pattern, fileRegex, limit);
        dump.Signal ??= SIGABRT;
        return dump;
    }

    private static LeakToolsException Blocked(string id, string message, int pid) =>
        new(FailureKind.NotSupported, id, string.Format(CultureInfo.InvariantCulture, message, pid), pid);

    private LeakToolsException NotFound(int pid, string name, CoreHandler handler, string pattern, Regex? regex, ulong? limit)
    {
        string where = handler switch
        {
            CoreHandler.File => $"no file matching {regex} appeared. The process's user may not write there, the process may be " +
                                "undumpable (setuid, prctl PR_SET_DUMPABLE 0; see /proc/sys/fs/suid_dumpable), or the disk filled up",
            CoreHandler.Abrt => $"abrt saved no problem directory for it under {AbrtSpool}: abrt drops cores of programs from no package " +
                                "unless ProcessUnpackaged = yes (/etc/abrt/abrt-action-save-package-data.conf), and it limits " +
                                "MaxCrashReportsSize (/etc/abrt/abrt.conf); see 'abrt-cli list' and the system log",
            _ => $"systemd-coredump stored no file for it in {SystemdCoredumpPath}: check Storage= and ProcessSizeMax= in " +
                 "/etc/systemd/coredump.conf, and 'coredumpctl list'",
        };
        return new LeakToolsException(FailureKind.NotFound, "CoreDumpNotFound",
            $"Process {pid} ({name}) was aborted but its core was not found: {where}. (core_pattern '{pattern}', RLIMIT_CORE {(limit is null ? "unlimited" : limit.ToString())}.)", pid);
    }

    /// <summary>Raises the soft RLIMIT_CORE to the hard limit (or both to unlimited with
    /// CAP_SYS_RESOURCE). Returns the soft limit in force (null = unlimited). Throws when the hard
    /// limit leaves no room for the core.</summary>
    private ulong? RaiseCoreLimit(int pid, string name, long estimate, CoreHandler handler)
    {
        Ptrace.RLimit old;
        if (Ptrace.Prlimit(pid, Ptrace.RLIMIT_CORE, null, &old) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno == Errno.ESRCH) throw new ProcessNotFoundException(pid);
            throw new LeakToolsException(FailureKind.AccessDenied, "AccessDenied", $"Cannot read the core limit of process {pid}: {Errno.Describe(errno)}.", pid);
        }
        bool canRaiseHard = (ProcFields.StatusHex(ProcFile.TryReadText("/proc/self/status", out _) ?? "", "CapEff") & (1UL << CAP_SYS_RESOURCE)) != 0;
        var wanted = new Ptrace.RLimit { Current = old.Max, Max = old.Max };
        if (canRaiseHard) wanted = new Ptrace.RLimit { Current = Ptrace.RLIM_INFINITY, Max = Ptrace.RLIM_INFINITY };
        if (wanted.Current != old.Current || wanted.Max != old.Max)
        {
            if (Ptrace.Prlimit(pid, Ptrace.RLIMIT_CORE, &wanted, null) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                throw new LeakToolsException(FailureKind.AccessDenied, "CoreLimitBlocked",
                    $"Cannot raise RLIMIT_CORE of process {pid} ({name}): {Errno.Describe(errno)}.", pid);
            }
            _verbose?.Invoke($"RLIMIT_CORE of process {pid}: {Show(old.Current)}:{Show(old.Max)} -> {Show(wanted.Current)}:{Show(wanted.Max)}.");
        }
        ulong soft = wanted.Current;
        // Pipes ignore the limit (except the value 1); files are cut at it.
        if (handler == CoreHandler.File && soft != Ptrace.RLIM_INFINITY && soft < (ulong)Math.Max(estimate, 1))
        {
            string why = soft == 0
                ? "its hard limit is 0"
                : $"its hard limit is {soft} bytes and the core needs about {estimate} bytes (the kernel would cut it there)";
            throw new LeakToolsException(FailureKind.AccessDenied, "CoreLimitBlocked",
                $"Cannot lift RLIMIT_CORE of process {pid} ({name}): {why}. Only a process with CAP_SYS_RESOURCE may raise a hard limit, " +
                "and this one lacks it (common in containers). The process was started under 'ulimit -c' (which sets both limits); " +
                "restart it with 'ulimit -S -c 0' (soft only) or a higher hard limit, or use -Method Snapshot, which needs no limit.", pid);
        }
        return soft == Ptrace.RLIM_INFINITY ? null : soft;
    }

    private static string Show(ulong v) => v == Ptrace.RLIM_INFINITY ? "unlimited" : v.ToString(CultureInfo.InvariantCulture);

    private long EstimateCoreBytes(int pid, uint filter)
    {
        int errno = ProcFile.TryRead(_root.File(pid, "smaps"), out ReadOnlySpan<byte> text);
        if (errno != 0) return 0;
        long total = 0;
        foreach (SmapsMapping m in SmapsParser.ParseMappings(text))
        {
            bool anon = m.Values.Get(SmapsField.Anonymous) > 0 || m.Values.Get(SmapsField.Swap) > 0;
            if (CoredumpFilter.Decide(m, filter, anon) == CoredumpFilter.Part.Whole) total += m.Values.Get(SmapsField.Rss);
        }
        return total;
    }

    /// <summary>True once the process is gone or a zombie: the kernel writes the core before that.</summary>
    private bool WaitForExit(int pid, TimeSpan timeout, CancellationToken cancel)
    {
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < timeout)
        {
            cancel.ThrowIfCancellationRequested();
            if (!ProcFields.IsAlive(_root, pid)) return true;
            Thread.Sleep(20);
        }
        return false;
    }

    private static CoreDump? WaitFor(Func<CoreDump?> find, TimeSpan timeout, CancellationToken cancel)
    {
        var sw = Stopwatch.StartNew();
        while (true)
        {
            cancel.ThrowIfCancellationRequested();
            CoreDump? d = find();
            if (d is not null || sw.Elapsed > timeout) return d;
            Thread.Sleep(50);
        }
    }

    private static CoreDump? FindFile(Regex regex, string dir, DateTime sent, CoreDumpCatalog catalog)
    {
        if (!Directory.Exists(dir)) return null;
        foreach (string f in Directory.EnumerateFiles(dir))
        {
            if (!regex.IsMatch(f)) continue;
            var info = new FileInfo(f);
            if (info.LastWriteTime < sent.AddSeconds(-1)) continue; // an older core
            CoreDump? d = catalog.DescribeFile(f);
            if (d is not null) return d;
        }
        return null;
    }

    private CoreDump? FindAbrt(int pid, DateTime sent, CoreDumpCatalog catalog)
    {
        foreach (CoreDump d in catalog.ListAbrt(AbrtSpool))
        {
            if (d.Id == pid && (d.Time is null || d.Time >= sent.AddSeconds(-2))) return d;
        }
        return null;
    }

    private CoreDump? FindSystemd(int pid, DateTime sent, CoreDumpCatalog catalog)
    {
        foreach (CoreDump d in catalog.ListSystemd(SystemdCoredumpPath))
        {
            if (d.Id == pid && (d.Time is null || d.Time >= sent.AddSeconds(-2))) return d;
        }
        return null;
    }
}
