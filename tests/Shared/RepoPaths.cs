namespace LeakTools.Tests.Shared;

/// <summary>Locates the repository (the folder holding LeakTools.sln) from the test binaries.</summary>
public static class RepoPaths
{
    private static readonly Lazy<string> s_root = new(() =>
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "LeakTools.sln"))) dir = Path.GetDirectoryName(dir);
        return dir ?? throw new InvalidOperationException("Cannot find LeakTools.sln above " + AppContext.BaseDirectory);
    });

    public static string Root => s_root.Value;

    public static string Fixtures => Path.Combine(Root, "tests", "fixtures");

    public static string Samples => Path.Combine(Root, "tests", "samples");

    /// <summary>The staged module (build.ps1 Build); tests that host PowerShell import it.</summary>
    public static string ModuleManifest => Path.Combine(Root, "out", "LeakTools", "LeakTools.psd1");
}
