using System.Globalization;
using System.Text;

namespace LeakTools.Core.Monitoring;

/// <summary>What runs a monitor: the command (absolute paths), its environment and its user.</summary>
public sealed record MonitorCommand(IReadOnlyList<string> Arguments, IReadOnlyList<KeyValuePair<string, string>> Environment, string User);

/// <summary>Unit and file names for monitors.</summary>
public static class MonitorNames
{
    public const string CronPrefix = "leaktools-";
    public const string UnitPrefix = "leaktools-monitor-";
    public const string HeaderPrefix = "# LeakTools-Monitor: ";

    /// <summary>Escapes as <c>systemd-escape</c> does (without --path): '/' becomes '-', and every
    /// byte other than ASCII letters, digits, ':', '_' and '.' (and a leading '.') becomes \xNN.</summary>
    public static string SystemdEscape(string value)
    {
        var sb = new StringBuilder();
        byte[] bytes = Encoding.UTF8.GetBytes(value);
        for (int i = 0; i < bytes.Length; i++)
        {
            byte b = bytes[i];
            if (b == '/') sb.Append('-');
            else if ((b == '.' && i == 0) || !(IsAsciiAlnum(b) || b is (byte)':' or (byte)'_' or (byte)'.'))
                sb.Append("\\x").Append(b.ToString("x2", CultureInfo.InvariantCulture));
            else sb.Append((char)b);
        }
        return sb.ToString();
    }

    /// <summary>A file-name-safe form for /etc/cron.d, whose files cron ignores unless the name is
    /// only letters, digits, '-' and '_' (run-parts rules): other bytes become _XX; '_' itself is
    /// escaped, so the mapping is one-to-one.</summary>
    public static string FileEscape(string value)
    {
        var sb = new StringBuilder();
        foreach (byte b in Encoding.UTF8.GetBytes(value))
        {
            if (IsAsciiAlnum(b) || b == '-') sb.Append((char)b);
            else sb.Append('_').Append(b.ToString("x2", CultureInfo.InvariantCulture));
        }
        return sb.ToString();
    }

    private static bool IsAsciiAlnum(byte b) => b is >= (byte)'a' and <= (byte)'z' or >= (byte)'A' and <= (byte)'Z' or >= (byte)'0' and <= (byte)'9';

    public static string UnitBase(string monitor) => UnitPrefix + SystemdEscape(monitor);

    public static string CronFile(string monitor) => CronPrefix + FileEscape(monitor);

    public static string DefaultHistory(string monitor) => $"/var/lib/leaktools/{FileEscape(monitor)}.db";
}

/// <summary>Renders the cron file and the systemd service + timer of a monitor.</summary>
public static class SchedulerFiles
{
    public const string DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

    /// <summary>Cron's five time fields for an interval; cron counts whole minutes on the clock, so
    /// only intervals that divide an hour or a day evenly keep a fixed period.</summary>
    public static string CronSchedule(TimeSpan interval)
    {
        ValidateInterval(interval, MonitorScheduler.Cron);
        if (interval.Ticks % TimeSpan.TicksPerMinute == 0)
        {
            long minutes = interval.Ticks / TimeSpan.TicksPerMinute;
            if (minutes == 1) return "* * * * *";
            if (minutes < 60 && 60 % minutes == 0) return $"*/{minutes} * * * *";
            if (minutes % 60 == 0)
            {
                long hours = minutes / 60;
                if (hours == 1) return "0 * * * *";
                if (hours < 24 && 24 % hours == 0) return $"0 */{hours} * * *";
                if (hours == 24) return "0 0 * * *";
            }
        }
        throw new LeakToolsException(FailureKind.NotSupported, "IntervalNotSupported",
            $"Cron cannot run every {Describe(interval)} at a fixed period: use 1, 2, 3, 4, 5, 6, 10, 12, 15, 20 or 30 minutes, " +
            "1, 2, 3, 4, 6, 8 or 12 hours, or a day (or -Scheduler Systemd, whose timers take any interval of 10 s or more).", interval);
    }

    /// <summary>Rejects intervals the scheduler cannot run: not positive, or too short (cron: a
    /// minute; systemd: 10 s, since each run starts pwsh).</summary>
    public static void ValidateInterval(TimeSpan interval, MonitorScheduler scheduler)
    {
        if (interval <= TimeSpan.Zero)
            throw new LeakToolsException(FailureKind.InvalidData, "InvalidInterval", $"The interval must be positive, not {interval}.", interval);
        TimeSpan minimum = scheduler == MonitorScheduler.Cron ? TimeSpan.FromMinutes(1) : TimeSpan.FromSeconds(10);
        if (interval < minimum)
            throw new LeakToolsException(FailureKind.NotSupported, "IntervalTooShort",
                scheduler == MonitorScheduler.Cron
                    ? $"Cron runs jobs at most once a minute; {Describe(interval)} is too short. Use -Scheduler Systemd for down to 10 s, or Watch-ProcessMemory for sub-second sampling."
                    : $"A systemd monitor starts pwsh on every run (about a second of CPU); {Describe(interval)} is too short, use 10 s or more, or Watch-ProcessMemory for sub-second sampling.",
                interval);
    }

    public static string Describe(TimeSpan t) => t.TotalSeconds < 120
        ? t.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture) + " s"
        : t.TotalMinutes < 120 ? t.TotalMinutes.ToString("0.##", CultureInfo.InvariantCulture) + " min"
        : t.TotalHours.ToString("0.##", CultureInfo.InvariantCulture) + " h";

    private static string Header(MonitorDefinition d, string removeHint) =>
        $"# Generated by LeakTools Register-LeakMonitor. Remove it with: {removeHint}\n" +
        MonitorNames.HeaderPrefix + d.ToJson() + "\n";

    private static string RemoveHint(MonitorDefinition d, string root) =>
        "Unregister-LeakMonitor -Name " + PowerShellQuote.Single(d.Name) + (root == "/" ? "" : " -Root " + PowerShellQuote.Single(root));

    /// <summary>/etc/cron.d/leaktools-NAME: SHELL, HOME and PATH set (cron's own environment is
    /// nearly empty and pwsh needs HOME), the schedule, the user and the command.</summary>
    public static string CronFile(MonitorDefinition d, MonitorCommand command, string root = "/")
    {
        var sb = new StringBuilder(Header(d, RemoveHint(d, root)));
        sb.Append("SHELL=/bin/sh\n");
        foreach (var (key, value) in command.Environment) sb.Append(key).Append('=').Append(value).Append('\n');
        sb.Append(CronSchedule(d.Interval)).Append(' ').Append(command.User).Append(' ').Append(CronCommand(command.Arguments)).Append('\n');
        return sb.ToString();
    }

    /// <summary>The command as cron's line holds it: sh-quoted, with '%' escaped (cron turns a bare
    /// '%' into a newline).</summary>
    public static string CronCommand(IEnumerable<string> arguments) =>
        string.Join(" ", arguments.Select(ShellQuote)).Replace("%", "\\%");

    /// <summary>Splits a /etc/cron.d line into its five time fields, the user and the command.</summary>
    public static (string Schedule, string User, string Command) SplitCronLine(string line)
    {
        string[] parts = line.Trim().Split((char[]?)null, 7, StringSplitOptions.RemoveEmptyEntries);
        return parts.Length < 7 ? ("", "", line.Trim()) : (string.Join(" ", parts[..5]), parts[5], parts[6]);
    }

    /// <summary>POSIX sh quoting: plain words stay as they are; others go in single quotes, or in
    /// double quotes (with \ before " \ $ `) when they hold single quotes, as generated PowerShell
    /// does — easier to read in the cron file than '\''.</summary>
    public static string ShellQuote(string value)
    {
        if (value.Length > 0 && value.All(c => char.IsAsciiLetterOrDigit(c) || "-_./:=@+,".Contains(c))) return value;
        if (!value.Contains('\'')) return "'" + value + "'";
        var sb = new StringBuilder("\"");
        foreach (char c in value)
        {
            if (c is '"' or '\\' or '$' or '`') sb.Append('\\');
            sb.Append(c);
        }
        return sb.Append('"').ToString();
    }

    public static string ServiceUnit(MonitorDefinition d, MonitorCommand command, string root = "/")
    {
        var sb = new StringBuilder(Header(d, RemoveHint(d, root)));
        sb.Append("[Unit]\n");
        sb.Append("Description=LeakTools leak monitor ").Append(SystemdValue(d.Name)).Append('\n');
        sb.Append("After=local-fs.target\n\n");
        sb.Append("[Service]\n");
        sb.Append("Type=oneshot\n");
        if (command.User != "root") sb.Append("User=").Append(command.User).Append('\n');
        foreach (var (key, value) in command.Environment) sb.Append("Environment=").Append(SystemdQuote(key + "=" + value)).Append('\n');
        sb.Append("ExecStart=").Append(string.Join(" ", command.Arguments.Select(SystemdQuote))).Append('\n');
        sb.Append("Nice=10\n");
        sb.Append("IOSchedulingClass=idle\n");
        return sb.ToString();
    }

    public static string TimerUnit(MonitorDefinition d, string root = "/")
    {
        string every = SystemdTimeSpan(d.Interval);
        var sb = new StringBuilder(Header(d, RemoveHint(d, root)));
        sb.Append("[Unit]\n");
        sb.Append("Description=Runs LeakTools leak monitor ").Append(SystemdValue(d.Name)).Append(" every ").Append(every).Append('\n');
        sb.Append('\n');
        sb.Append("[Timer]\n");
        sb.Append("OnBootSec=").Append(every).Append('\n');
        sb.Append("OnUnitActiveSec=").Append(every).Append('\n');
        sb.Append("AccuracySec=1s\n");
        sb.Append("Unit=").Append(SystemdSpecifiers(MonitorNames.UnitBase(d.Name) + ".service")).Append('\n');
        sb.Append('\n');
        sb.Append("[Install]\n");
        sb.Append("WantedBy=timers.target\n");
        return sb.ToString();
    }

    /// <summary>A systemd time span: whole seconds as "60s", else milliseconds.</summary>
    public static string SystemdTimeSpan(TimeSpan t) => t.Ticks % TimeSpan.TicksPerSecond == 0
        ? (t.Ticks / TimeSpan.TicksPerSecond).ToString(CultureInfo.InvariantCulture) + "s"
        : ((long)Math.Round(t.TotalMilliseconds)).ToString(CultureInfo.InvariantCulture) + "ms";

    /// <summary>One word of ExecStart= or Environment=: in double quotes when it needs them, with
    /// C escapes for '\' and '"', '%%' for the specifier character and '$$' for the variable one.</summary>
    public static string SystemdQuote(string value)
    {
        string escaped = SystemdSpecifiers(value).Replace("$", "$$");
        bool plain = value.Length > 0 && value.All(c => char.IsAsciiLetterOrDigit(c) || "-_./:=@+,".Contains(c));
        if (plain) return escaped;
        var sb = new StringBuilder("\"");
        foreach (char c in escaped)
        {
            switch (c)
            {
                case '\\': sb.Append("\\\\"); break;
                case '"': sb.Append("\\\""); break;
                case '\n': sb.Append("\\n"); break;
                case '\t': sb.Append("\\t"); break;
                default: sb.Append(c); break;
            }
        }
        return sb.Append('"').ToString();
    }

    private static string SystemdSpecifiers(string value) => value.Replace("%", "%%");

    /// <summary>A free-text value (Description=): specifiers escaped, line breaks removed.</summary>
    private static string SystemdValue(string value) => SystemdSpecifiers(value.Replace('\n', ' '));

    /// <summary>Reads the definition back from a generated file's header comment.</summary>
    public static MonitorDefinition? ReadDefinition(string fileText)
    {
        foreach (string line in fileText.Split('\n'))
        {
            if (line.StartsWith(MonitorNames.HeaderPrefix, StringComparison.Ordinal))
                return MonitorDefinition.FromJson(line[MonitorNames.HeaderPrefix.Length..]);
        }
        return null;
    }
}
