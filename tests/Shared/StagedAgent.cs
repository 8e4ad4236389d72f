using System.Runtime.CompilerServices;

namespace LeakTools.Tests.Shared;

/// <summary>The in-process agent that build.ps1 Build compiles into the staged module: test
/// processes (and the helper hosts they start, which inherit the environment) find it through
/// LEAKTOOLS_AGENT_PATH, since the assemblies they load come from the test's bin folder.</summary>
public static class StagedAgent
{
    public static string Path => System.IO.Path.Combine(RepoPaths.Root, "out", "LeakTools", "native", "linux-x64", "libleaktools-agent.so");

    [ModuleInitializer]
    internal static void Point()
    {
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable("LEAKTOOLS_AGENT_PATH")) && File.Exists(Path))
            Environment.SetEnvironmentVariable("LEAKTOOLS_AGENT_PATH", Path);
    }
}
