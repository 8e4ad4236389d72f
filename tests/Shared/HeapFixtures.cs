namespace LeakTools.Tests.Shared;

/// <summary>The heap-leaks known-answer program (tests/fixtures/heap-leaks.cpp), built once.</summary>
public static class HeapFixtures
{
    /// <summary>C++, linked to libstdc++ (listed before the source, hence --no-as-needed).</summary>
    public const string HeapLeaksFlags = "-O0 -g -Wl,--no-as-needed -lstdc++";

    public static string HeapLeaks() => FixtureBuilder.Build("heap-leaks.cpp", HeapLeaksFlags, "lt-heap-leaks");
}
