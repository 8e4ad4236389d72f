namespace LeakTools.Tests.Shared;

/// <summary>Reads the C fixtures' sources, so tests find a line by its marker text instead of
/// hard-coding a number that an edit of the fixture would shift.</summary>
public static class FixtureSource
{
    /// <summary>The 1-based line of tests/fixtures/<paramref name="source"/> that contains <paramref name="text"/> (exactly one must).</summary>
    public static int LineOf(string source, string text) =>
        File.ReadAllLines(Path.Combine(RepoPaths.Fixtures, source)).Select((line, i) => (line, i)).Single(x => x.line.Contains(text, StringComparison.Ordinal)).i + 1;
}
