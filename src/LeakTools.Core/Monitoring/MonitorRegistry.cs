using System.Diagnostics;
using System.Text;

namespace LeakTools.Core.Monitoring;

/// <summary>Writes, finds and removes monitors' scheduler files under a root ("/" on a real
/// system; a temporary folder in tests, so they never touch the machine's cron or systemd).
/// Cron: <c>ROOT/etc/cron.d/leaktools-NAME</c>. Systemd: <c>ROOT/etc/systemd/system/
/// leaktools-monitor-NAME.service</c> and <c>.timer</c>, enabled by the link in
/// <c>timers.target.wants</c> (what <c>systemctl enable</c> makes); when ROOT is "/" and systemd
/// runs, <c>systemctl daemon-reload</c> and <c>start</c> follow.</summary>
public sealed class MonitorRegistry
{
    private static readonly System.Text.RegularExpressions.Regex s_cronVariable = new(@"^\s*[A-Za-z_][A-Za-z0-9_]*\s*=");

    public MonitorRegistry(string root = "/")
    {
        Root = string.IsNullOrEmpty(root) ? "/" : Path.GetFullPath(root);
    }

    public string Root { get; }

    public bool IsSystemRoot => Root == "/";

    public string CronDirectory => Path.Combine(Root, "etc/cron.d");

    public string SystemdDirectory => Path.Combine(Root, "etc/systemd/system");

    public string WantsDirectory => Path.Combine(SystemdDirectory, "timers.target.wants");

    /// <summary>True when systemd is the init system here (as sd_booted() tests).</summary>
    public static bool SystemdRunning => Directory.Exists("/run/systemd/system");

    /// <summary>The scheduler to use when none is named: systemd where it runs, else cron.</summary>
    public static MonitorScheduler DefaultScheduler => SystemdRunning ? MonitorScheduler.Systemd : MonitorScheduler.Cron;

    /// <summary>A path as the monitor sees it at run time: under the root when one is set.</summary>
    public string UnderRoot(string absolute) => IsSystemRoot ? absolute : Path.Combine(Root, absolute.TrimStart('/'));

    public string[] FilesOf(string monitor, MonitorScheduler scheduler)
    {
        if (scheduler == MonitorScheduler.Cron) return new[] { Path.Combine(CronDirectory, MonitorNames.CronFile(monitor)) };
        string unit = MonitorNames.UnitBase(monitor);
        return new[]
        {
            Path.Combine(SystemdDirectory, unit + ".service"),
            Path.Combine(SystemdDirectory, unit + ".timer"),
            Path.Combine(WantsDirectory, unit + ".timer"),
        };
    }

    /// <summary>Writes the monitor's files (atomically, mode 0644) and enables it; returns what it
    /// is now and notes for the user (e.g. "systemd is not running").</summary>
    public (LeakMonitor Monitor, List<string> Notes) Register(MonitorDefinition definition, MonitorCommand command)
    {
        var notes = new List<string>();
        if (Encoding.UTF8.GetByteCount(MonitorNames.UnitBase(definition.Name)) + ".service".Length > 255)
            throw new LeakToolsException(FailureKind.InvalidData, "MonitorNameTooLong", $"The monitor name '{definition.Name}' is too long for a unit or file name.", definition.Name);
        if (definition.Scheduler == MonitorScheduler.Cron)
        {
            SchedulerFiles.CronSchedule(definition.Interval); // validates before anything is written
            string file = FilesOf(definition.Name, MonitorScheduler.Cron)[0];
            WriteFile(file, SchedulerFiles.CronFile(definition, command, Root));
            if (IsSystemRoot && !CronDaemonRunning())
                notes.Add("No cron daemon (cron or crond) is running: the monitor runs once one is started.");
        }
        else
        {
            SchedulerFiles.ValidateInterval(definition.Interval, MonitorScheduler.Systemd);
            string[] files = FilesOf(definition.Name, MonitorScheduler.Systemd);
            WriteFile(files[0], SchedulerFiles.ServiceUnit(definition, command, Root));
            WriteFile(files[1], SchedulerFiles.TimerUnit(definition, Root));
            Directory.CreateDirectory(WantsDirectory);
            if (File.Exists(files[2]) || new FileInfo(files[2]).LinkTarget is not null) File.Delete(files[2]);
            File.CreateSymbolicLink(files[2], "../" + Path.GetFileName(files[1]));
            if (IsSystemRoot && SystemdRunning)
            {
                Systemctl("daemon-reload");
                Systemctl("start", Path.GetFileName(files[1]));
            }
            else if (IsSystemRoot)
            {
                notes.Add("systemd is not running here (PID 1 is not systemd): the units are written and enabled and start at the next boot under systemd. Use -Scheduler Cron on this machine.");
            }
        }
        var monitor = Find(definition.Name).FirstOrDefault(m => m.Scheduler == definition.Scheduler)
            ?? throw new LeakToolsException(FailureKind.SystemError, "MonitorNotWritten", $"The monitor '{definition.Name}' was written but cannot be read back.", definition.Name);
        return (monitor, notes);
    }

    /// <summary>Every monitor under the root; those whose name matches <paramref name="nameFilter"/>.</summary>
    public List<LeakMonitor> List(Func<string, bool>? nameFilter = null)
    {
        var list = new List<LeakMonitor>();
        if (Directory.Exists(CronDirectory))
        {
            foreach (string file in Directory.EnumerateFiles(CronDirectory, MonitorNames.CronPrefix + "*").Order(StringComparer.Ordinal))
            {
                if (Path.GetFileName(file).Contains('.')) continue; // cron ignores such files too (backups, .dpkg-old)
                LeakMonitor? m = Load(file, MonitorScheduler.Cron);
                if (m is not null) list.Add(m);
            }
        }
        if (Directory.Exists(SystemdDirectory))
        {
            foreach (string file in Directory.EnumerateFiles(SystemdDirectory, MonitorNames.UnitPrefix + "*.timer").Order(StringComparer.Ordinal))
            {
                LeakMonitor? m = Load(file, MonitorScheduler.Systemd);
                if (m is not null) list.Add(m);
            }
        }
        return nameFilter is null ? list : list.Where(m => nameFilter(m.Name)).ToList();
    }

    public List<LeakMonitor> Find(string name) => List(n => n == name);

    private LeakMonitor? Load(string file, MonitorScheduler scheduler)
    {
        string text;
        try
        {
            text = File.ReadAllText(file);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        MonitorDefinition? d = SchedulerFiles.ReadDefinition(text);
        if (d is null) return null;
        string[] files = FilesOf(d.Name, scheduler);
        string command = "";
        if (scheduler == MonitorScheduler.Cron)
        {
            string? line = text.Split('\n').LastOrDefault(l => l.Trim().Length > 0 && !l.TrimStart().StartsWith('#') && !s_cronVariable.IsMatch(l));
            if (line is not null) command = SchedulerFiles.SplitCronLine(line).Command;
        }
        else if (File.Exists(files[0]))
        {
            command = File.ReadAllLines(files[0]).FirstOrDefault(l => l.StartsWith("ExecStart=", StringComparison.Ordinal))?["ExecStart=".Length..] ?? "";
        }
        return new LeakMonitor
        {
            Name = d.Name,
            ProcessName = d.ProcessName,
            Scheduler = scheduler,
            Interval = d.Interval,
            Window = d.Window,
            Retention = d.Retention,
            History = d.History,
            Action = d.Action,
            SnapshotDirectory = d.SnapshotDirectory,
            PrometheusTextfile = d.PrometheusTextfile,
            Property = d.Property,
            MinimumGrowth = d.MinimumGrowth,
            Confidence = d.Confidence,
            Command = command,
            Files = files.Where(f => File.Exists(f) || new FileInfo(f).LinkTarget is not null).ToArray(),
            Enabled = scheduler == MonitorScheduler.Cron || new FileInfo(files[2]).LinkTarget is not null,
            Root = Root,
        };
    }

    /// <summary>Stops (systemd, on the real root) and removes a monitor's files; the history stays
    /// unless <paramref name="removeHistory"/>.</summary>
    public List<string> Unregister(LeakMonitor monitor, bool removeHistory)
    {
        var removed = new List<string>();
        string[] files = FilesOf(monitor.Name, monitor.Scheduler);
        if (monitor.Scheduler == MonitorScheduler.Systemd && IsSystemRoot && SystemdRunning)
            Systemctl("stop", Path.GetFileName(files[1]));
        foreach (string f in Enumerable.Reverse(files))
        {
            if (File.Exists(f) || new FileInfo(f).LinkTarget is not null)
            {
                File.Delete(f);
                removed.Add(f);
            }
        }
        if (monitor.Scheduler == MonitorScheduler.Systemd && IsSystemRoot && SystemdRunning) Systemctl("daemon-reload");
        if (removeHistory)
        {
            string history = monitor.History;
            foreach (string f in new[] { history, history + "-wal", history + "-shm", history + ".pending", history + ".state.json" })
            {
                if (File.Exists(f))
                {
                    File.Delete(f);
                    removed.Add(f);
                }
            }
        }
        return removed;
    }

    private static void WriteFile(string path, string content)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        string temp = Path.Combine(Path.GetDirectoryName(path)!, "." + Path.GetFileName(path) + ".tmp" + Environment.ProcessId);
        File.WriteAllText(temp, content, new UTF8Encoding(false));
        File.SetUnixFileMode(temp, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Is a cron daemon running (a process named cron or crond)?</summary>
    public static bool CronDaemonRunning()
    {
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            string name = Path.GetFileName(dir);
            if (name.Length == 0 || !char.IsAsciiDigit(name[0])) continue;
            try
            {
                string comm = File.ReadAllText(Path.Combine(dir, "comm")).Trim();
                if (comm is "cron" or "crond") return true;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
        }
        return false;
    }

    private static void Systemctl(params string[] args)
    {
        var psi = new ProcessStartInfo("systemctl") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (string a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
            throw new LeakToolsException(FailureKind.SystemError, "SystemctlFailed", $"systemctl {string.Join(' ', args)} failed ({p.ExitCode}): {err.Trim()}", args.LastOrDefault());
    }
}
