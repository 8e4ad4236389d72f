using System.Management.Automation;
using LeakTools.Core.ProcFs;

namespace LeakTools.Commands;

/// <summary>Get-ProcessPss: how much memory processes really use (Pss, Uss, Rss, Swap...).</summary>
[Cmdlet(VerbsCommon.Get, "ProcessPss", DefaultParameterSetName = NameSet)]
[OutputType(typeof(ProcessMemory))]
public sealed class GetProcessPssCommand : ProcessTargetCommandBase
{
    protected override void ProcessTarget(ProcessIdentity identity) => WriteObject(Reader.ReadMemory(identity));
}
