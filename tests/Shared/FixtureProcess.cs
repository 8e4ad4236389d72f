using System.Diagnostics;
using System.Globalization;

namespace LeakTools.Tests.Shared;

/// <summary>A running fixture. Fixtures print "READY key=value ..." once set up and exit when
/// their stdin closes, so none outlives the test run; Dispose kills and reaps it anyway.
/// Not for ptrace tests: .NET reaps Process children and would swallow ptrace stops.</summary>
public sealed class FixtureProcess : IDisposable
{
    private readonly Process _process;

    private FixtureProcess(Process process, Dictionary<string, string> values)
    {
        _process = process;
        Values = values;
    }

    public int Pid => _process.Id;

    /// <summary>The key=value pairs of the READY line.</summary>
    public IReadOnlyDictionary<string, string> Values { get; }

    public ulong Hex(string key) => ulong.Parse(Values[key].AsSpan(Values[key].StartsWith("0x") ? 2 : 0), NumberStyles.HexNumber, CultureInfo.InvariantCulture);

    public long Long(string key) => long.Parse(Values[key], CultureInfo.InvariantCulture);

    public static FixtureProcess Start(string path, params string[] args) => StartWith(path, null, args);

    /// <summary>Starts <paramref name="path"/> through <paramref name="wrapper"/> (e.g. setpriv) when given.</summary>
    public static FixtureProcess StartWith(string path, string[]? wrapper, params string[] args)
    {
        var psi = new ProcessStartInfo(wrapper?[0] ?? path)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (wrapper is not null)
        {
            foreach (string w in wrapper.Skip(1)) psi.ArgumentList.Add(w);
            psi.ArgumentList.Add(path);
        }
        foreach (string a in args) psi.ArgumentList.Add(a);
        var process = Process.Start(psi)!;
        var readLine = process.StandardOutput.ReadLineAsync();
        if (!readLine.Wait(TimeSpan.FromSeconds(30)) || readLine.Result is null)
        {
            try { process.Kill(true); } catch (InvalidOperationException) { }
            throw new InvalidOperationException($"{path} did not print READY: {process.StandardError.ReadToEnd()}");
        }
        string line = readLine.Result;
        if (!line.StartsWith("READY", StringComparison.Ordinal)) throw new InvalidOperationException($"{path} printed '{line}' instead of READY");
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string part in line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1))
        {
            int eq = part.IndexOf('=');
            if (eq > 0) values[part[..eq]] = part[(eq + 1)..];
        }
        return new FixtureProcess(process, values);
    }

    /// <summary>Sends a line to the fixture's stdin (fixtures that take commands).</summary>
    public void Send(string line)
    {
        _process.StandardInput.WriteLine(line);
        _process.StandardInput.Flush();
    }

    public string? ReadLine(TimeSpan timeout)
    {
        var t = _process.StandardOutput.ReadLineAsync();
        return t.Wait(timeout) ? t.Result : null;
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(10_000);
            }
        }
        catch (InvalidOperationException) { }
        _process.Dispose();
    }
}
