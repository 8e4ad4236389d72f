using System.Management.Automation;
using LeakTools.Core.ProcFs;

namespace LeakTools.Commands;

/// <summary>Get-ProcessMemoryMap: pmap -X as objects, one per mapping.</summary>
[Cmdlet(VerbsCommon.Get, "ProcessMemoryMap", DefaultParameterSetName = IdSet)]
[OutputType(typeof(MemoryMapping))]
public sealed class GetProcessMemoryMapCommand : ProcessTargetCommandBase
{
    protected override void ProcessTarget(ProcessIdentity identity)
    {
        foreach (MemoryMapping mapping in Reader.ReadMappings(identity)) WriteObject(mapping);
    }
}
