using System.Diagnostics;

namespace LeakTools.Core.Monitoring;

public enum SyslogLevel { Error, Warning, Notice, Info }

/// <summary>Where a monitor's alerts go.</summary>
public interface ISyslog
{
    /// <summary>Writes one message; throws <see cref="LeakToolsException"/> (SyslogFailed) when it cannot.</summary>
    void Write(SyslogLevel level, string message);
}

/// <summary>Syslog through the system's <c>logger</c> (util-linux/bsdutils): works with rsyslog,
/// syslog-ng and journald alike, on RHEL 7 too. The command and its leading arguments are
/// configurable (<c>logger -u /run/x.sock</c> for a custom socket; tests point it elsewhere so they
/// do not fill the real syslog). Messages go as <c>logger -t TAG -p user.LEVEL -- MESSAGE</c>.</summary>
public sealed class LoggerSyslog : ISyslog
{
    private readonly string[] _command;

    public LoggerSyslog(IReadOnlyList<string>? command = null, string tag = "leaktools")
    {
        _command = command is { Count: > 0 } ? command.ToArray() : new[] { "logger" };
        Tag = tag;
    }

    public string Tag { get; }

    public IReadOnlyList<string> Arguments(SyslogLevel level, string message)
    {
        string priority = "user." + level switch
        {
            SyslogLevel.Error => "err",
            SyslogLevel.Warning => "warning",
            SyslogLevel.Notice => "notice",
            _ => "info",
        };
        return _command.Skip(1).Concat(new[] { "-t", Tag, "-p", priority, "--", message }).ToArray();
    }

    public void Write(SyslogLevel level, string message)
    {
        var psi = new ProcessStartInfo(_command[0])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (string a in Arguments(level, message)) psi.ArgumentList.Add(a);
        try
        {
            using var p = Process.Start(psi)!;
            p.StandardInput.Close();
            string stderr = p.StandardError.ReadToEnd();
            p.StandardOutput.ReadToEnd();
            if (!p.WaitForExit(10_000))
            {
                try { p.Kill(); } catch (InvalidOperationException) { }
                throw Failed($"{_command[0]} did not finish in 10 s");
            }
            if (p.ExitCode != 0) throw Failed($"{_command[0]} exited with {p.ExitCode}: {stderr.Trim()}");
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw Failed($"cannot run {_command[0]}: {ex.Message}");
        }
    }

    private static LeakToolsException Failed(string detail) =>
        new(FailureKind.NotSupported, "SyslogFailed", $"Writing to syslog failed: {detail}.", null);
}
