namespace LeakTools.Tests.Shared;

/// <summary>The heap analysis's fixtures: the heap-leaks known-answer program (tests/fixtures/heap-leaks.cpp), built once.</summary>
public static class HeapFixtures
{
    /// <summary>C++, linked to libstdc++ (listed before the source, hence --no-as-needed).</summary>
    public const string HeapLeaksFlags = "-O0 -g -Wl,--no-as-needed -lstdc++";

    public static string HeapLeaks() => FixtureBuilder.Build("heap-leaks.cpp", HeapLeaksFlags, "lt-heap-leaks");

    /// <summary>tests/fixtures/core-sites.c: leaks from leak_early, leak_in_alpha, leak_in_beta on command
    /// (-O2, PIE, no frame pointers, as the agent's tests build their targets).</summary>
    public static string CoreSites() => FixtureBuilder.Build("core-sites.c", "-O2 -g -fPIE -pie", "lt-core-sites");
}
