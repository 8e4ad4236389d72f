using System.Management.Automation;
using LeakTools.Core;
using LeakTools.Core.ProcFs;

namespace LeakTools.Commands;

/// <summary>Get-SystemMemory: /proc/meminfo as one object.</summary>
[Cmdlet(VerbsCommon.Get, "SystemMemory")]
[OutputType(typeof(SystemMemory))]
public sealed class GetSystemMemoryCommand : PSCmdlet
{
    protected override void EndProcessing()
    {
        try
        {
            WriteObject(MeminfoReader.Read());
        }
        catch (LeakToolsException ex)
        {
            ThrowTerminatingError(ErrorRecords.From(ex));
        }
    }
}
