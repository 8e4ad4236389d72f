using Xunit;

namespace LeakTools.Tests.Shared;

/// <summary>A fact that needs a Linux machine with the named tools on PATH; skipped cleanly elsewhere.</summary>
public sealed class LinuxFactAttribute : FactAttribute
{
    public LinuxFactAttribute(params string[] tools)
    {
        if (!OperatingSystem.IsLinux()) { Skip = "Linux only"; return; }
        foreach (string tool in tools)
        {
            if (!ToolExists(tool)) { Skip = $"{tool} is not installed"; return; }
        }
    }

    public static bool ToolExists(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':').Any(d => File.Exists(Path.Combine(d, tool)));
}

/// <summary>A theory that needs a Linux machine with the named tools on PATH; skipped cleanly elsewhere.</summary>
public sealed class LinuxTheoryAttribute : TheoryAttribute
{
    public LinuxTheoryAttribute(params string[] tools)
    {
        if (!OperatingSystem.IsLinux()) { Skip = "Linux only"; return; }
        foreach (string tool in tools)
        {
            if (!LinuxFactAttribute.ToolExists(tool)) { Skip = $"{tool} is not installed"; return; }
        }
    }
}
