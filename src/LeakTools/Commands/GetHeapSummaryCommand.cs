using System.Management.Automation;
using LeakTools.Core.Heap;

namespace LeakTools.Commands;

/// <summary>Get-HeapSummary: glibc malloc's arenas in a core (or a snapshot taken now), as
/// malloc_info(3) would report them in the process: one row per arena, one for mmapped chunks.</summary>
[Cmdlet(VerbsCommon.Get, "HeapSummary", DefaultParameterSetName = PathSet)]
[OutputType(typeof(HeapSummary))]
public sealed class GetHeapSummaryCommand : CoreHeapCommandBase
{
    protected override void Process(CoreHeapAnalysis analysis)
    {
        foreach (HeapSummary row in analysis.Summarize()) WriteObject(row);
    }
}
