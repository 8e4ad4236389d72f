using System.Management.Automation;
using LeakTools.Core.Heap;

namespace LeakTools.Commands;

/// <summary>Find-LeakedAllocation: heap blocks a process can no longer reach, found in a core of it
/// (or a snapshot taken now) without any instrumentation.</summary>
[Cmdlet(VerbsCommon.Find, "LeakedAllocation", DefaultParameterSetName = PathSet)]
[OutputType(typeof(LeakedAllocation))]
public sealed class FindLeakedAllocationCommand : CoreHeapCommandBase
{
    /// <summary>Leaked (default): every unreachable block. Unreferenced: only those no other leaked block points to.</summary>
    [Parameter]
    public LeakedAllocationKind Kind { get; set; } = LeakedAllocationKind.Leaked;

    protected override void Process(CoreHeapAnalysis analysis)
    {
        List<LeakedAllocation> leaks = analysis.FindLeaks(Kind == LeakedAllocationKind.Unreferenced, Cancel);
        HeapScanStatistics s = analysis.Statistics;
        WriteVerbose($"{s.Blocks:N0} blocks; {s.Leaked:N0} leaked; scanned {s.RootBytes:N0} bytes of roots and {s.ScannedBlockBytes:N0} bytes of blocks in {s.ScanTime.TotalMilliseconds:0} ms.");
        if (s.AllocationSites is not null) WriteVerbose($"{s.AllocationSites} {s.LeaksWithSites:N0} of the leaked blocks have one.");
        foreach (LeakedAllocation leak in leaks) WriteObject(leak);
    }
}
