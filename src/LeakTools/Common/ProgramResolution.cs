using System.Management.Automation;
using LeakTools.Core;
using LeakTools.Core.Reports;

namespace LeakTools.Commands;

/// <summary>-FilePath of the cmdlets that start a program (Invoke-Valgrind, Watch-Allocation):
/// resolved against PATH and the current location, or a terminating ProgramNotFound error.</summary>
internal static class ProgramResolution
{
    public static (string Program, string WorkingDirectory) Resolve(PSCmdlet cmdlet, string filePath)
    {
        string cwd = cmdlet.SessionState.Path.CurrentFileSystemLocation.ProviderPath;
        try
        {
            return (ExecutableLocator.ResolveProgram(filePath, cwd), cwd);
        }
        catch (LeakToolsException ex)
        {
            cmdlet.ThrowTerminatingError(ErrorRecords.From(ex, filePath));
            throw; // not reached
        }
    }
}
