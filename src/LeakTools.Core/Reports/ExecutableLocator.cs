namespace LeakTools.Core.Reports;

/// <summary>Finds programs the way a shell does: a name with a slash is a path (relative to the
/// caller's directory), a bare name is looked up on PATH.</summary>
public static class ExecutableLocator
{
    private const UnixFileMode AnyExecute = UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;

    /// <summary>The full path of a program on PATH, or null.</summary>
    public static string? FindOnPath(string name, string? pathVariable = null)
    {
        string path = pathVariable ?? Environment.GetEnvironmentVariable("PATH") ?? "/usr/local/bin:/usr/bin:/bin";
        foreach (string dir in path.Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, name);
            if (IsExecutableFile(candidate)) return candidate;
        }
        return null;
    }

    /// <summary>Resolves the program to run; throws ProgramNotFound or ProgramNotExecutable.</summary>
    public static string ResolveProgram(string program, string workingDirectory)
    {
        if (string.IsNullOrWhiteSpace(program))
            throw new LeakToolsException(FailureKind.NotFound, "ProgramNotFound", "No program was given to run.", program);
        if (!program.Contains('/'))
        {
            return FindOnPath(program) ?? throw new LeakToolsException(FailureKind.NotFound, "ProgramNotFound",
                $"Cannot find the program '{program}': it is not on PATH. Give its path (./{program} for one in the current directory).", program);
        }
        string full = Path.GetFullPath(program, workingDirectory);
        if (Directory.Exists(full))
            throw new LeakToolsException(FailureKind.NotFound, "ProgramNotFound", $"'{full}' is a directory, not a program.", program);
        if (!File.Exists(full))
            throw new LeakToolsException(FailureKind.NotFound, "ProgramNotFound", $"Cannot find the program '{full}': it does not exist.", program);
        if (!IsExecutableFile(full))
            throw new LeakToolsException(FailureKind.AccessDenied, "ProgramNotExecutable",
                $"'{full}' is not executable (chmod +x it, or run its interpreter with the script as an argument).", program);
        return full;
    }

    private static bool IsExecutableFile(string path)
    {
        try
        {
            return File.Exists(path) && (File.GetUnixFileMode(path) & AnyExecute) != 0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}
