namespace LeakTools.Core.Interop;

/// <summary>Execute bits of the module's native files (the agent library under native/, SQLite's
/// under runtimes/). A .nupkg is a zip without Unix modes, so a module installed by
/// Install-PSResource or Save-PSResource has them 0644; the module puts them back on import.</summary>
public static class NativeAssetModes
{
    private static readonly string[] Folders = { "native", "runtimes" };

    /// <summary>Adds x wherever r is set (u, g, o) on every *.so under native/ and runtimes/ of
    /// <paramref name="moduleDirectory"/>. Returns the files changed; files the caller may not
    /// change (a module installed by root, imported by a user) are left as they are.</summary>
    public static IReadOnlyList<string> Restore(string moduleDirectory)
    {
        var changed = new List<string>();
        foreach (string folder in Folders)
        {
            string dir = Path.Combine(moduleDirectory, folder);
            if (!Directory.Exists(dir)) continue;
            foreach (string file in Directory.EnumerateFiles(dir, "*.so*", SearchOption.AllDirectories))
            {
                try
                {
                    UnixFileMode mode = File.GetUnixFileMode(file);
                    UnixFileMode wanted = mode;
                    if (mode.HasFlag(UnixFileMode.UserRead)) wanted |= UnixFileMode.UserExecute;
                    if (mode.HasFlag(UnixFileMode.GroupRead)) wanted |= UnixFileMode.GroupExecute;
                    if (mode.HasFlag(UnixFileMode.OtherRead)) wanted |= UnixFileMode.OtherExecute;
                    if (wanted == mode) continue;
                    File.SetUnixFileMode(file, wanted);
                    changed.Add(file);
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                }
            }
        }
        return changed;
    }
}
