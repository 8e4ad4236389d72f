using System.Text.RegularExpressions;

namespace LeakTools.Tests.Shared;

/// <summary>tests/fixtures/alloc-server.c, the allocation tracer's live fixture: built -O2 without
/// frame pointers as PIE; commands on stdin (start, join, fork, hoard, release, sum).</summary>
public static class AllocServer
{
    public static string Build() => FixtureBuilder.Build("alloc-server.c", "-O2 -g -fPIE -pie -fomit-frame-pointer", "lt-alloc-server");

    /// <summary>Line of the SITE:<paramref name="marker"/> comment (the call site the tests expect).</summary>
    public static int SiteLine(string marker) =>
        File.ReadAllLines(Path.Combine(RepoPaths.Fixtures, "alloc-server.c")).Select((l, i) => (l, i)).First(x => x.l.Contains("SITE:" + marker + " ")).i + 1;

    /// <summary>Sends a command and returns the fixture's one-line answer.</summary>
    public static string Ask(FixtureProcess f, string command)
    {
        f.Send(command);
        return f.ReadLine(TimeSpan.FromSeconds(60)) ?? "no answer";
    }

    public static bool IsTraced(int pid) => Regex.IsMatch(File.ReadAllText($"/proc/{pid}/status"), @"TracerPid:\s+[1-9]");

    /// <summary>The in-process agent is loaded and hooked in: it is mapped and the injection's
    /// ptrace hold is over (leaktools_agent_start has returned).</summary>
    public static bool HasAgent(int pid) =>
        !IsTraced(pid) && File.ReadAllText($"/proc/{pid}/maps").Contains("libleaktools-agent.so");

    /// <summary>Waits (up to 30 s) until either engine watches <paramref name="pid"/>: a tracer
    /// holds it (breakpoint engine) or the agent is hooked in.</summary>
    public static void WaitUntilWatched(int pid)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!IsTraced(pid) && !HasAgent(pid) && DateTime.UtcNow < deadline) Thread.Sleep(20);
    }

    /// <summary>Waits (up to 30 s) until the agent is hooked into <paramref name="pid"/>.</summary>
    public static void WaitUntilAgent(int pid)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!HasAgent(pid) && DateTime.UtcNow < deadline) Thread.Sleep(20);
    }

    /// <summary>Waits (up to 30 s) until a tracer holds <paramref name="pid"/>.</summary>
    public static void WaitUntilTraced(int pid)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!IsTraced(pid) && DateTime.UtcNow < deadline) Thread.Sleep(20);
    }
}
