using Xunit;

namespace LeakTools.Tests.Shared;

/// <summary>A fact that needs a Linux machine with the named tools on PATH; skipped cleanly elsewhere.</summary>
public sealed class LinuxFactAttribute : FactAttribute
{
    public LinuxFactAttribute(params string[] tools) => Skip = SkipReason(tools);

    /// <summary>Why a test needing <paramref name="tools"/> must be skipped here, or null.</summary>
    public static string? SkipReason(string[] tools)
    {
        if (!OperatingSystem.IsLinux()) return "Linux only";
        foreach (string tool in tools)
        {
            if (!ToolExists(tool)) return $"{tool} is not installed";
        }
        return null;
    }

    public static bool ToolExists(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':').Any(d => File.Exists(Path.Combine(d, tool)));
}

/// <summary>A theory that needs a Linux machine with the named tools on PATH.</summary>
public sealed class LinuxTheoryAttribute : TheoryAttribute
{
    public LinuxTheoryAttribute(params string[] tools) => Skip = LinuxFactAttribute.SkipReason(tools);
}
