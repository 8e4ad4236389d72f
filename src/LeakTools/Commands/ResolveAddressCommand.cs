using System.Management.Automation;
using LeakTools.Core;
using LeakTools.Core.Symbols;

namespace LeakTools.Commands;

/// <summary>Resolve-Address: addresses to function and file:line, like addr2line -f -C -i, for an
/// ELF file's virtual addresses (-Path) or a live process's runtime addresses (-Id), or for
/// unresolved StackFrame objects from the pipeline.</summary>
[Cmdlet(VerbsDiagnostic.Resolve, "Address", DefaultParameterSetName = FrameSet)]
[OutputType(typeof(StackFrame))]
public sealed class ResolveAddressCommand : PSCmdlet
{
    private const string PathSet = "Path";
    private const string IdSet = "Id";
    private const string FrameSet = "InputObject";

    private SymbolCache _cache = SymbolCache.Shared;
    private ModuleSymbolizer? _module;
    private ProcessSymbolizer? _process;
    private bool _failed;
    private readonly List<StackFrame> _frames = new();

    /// <summary>Addresses: hex strings ('0x4079d3', '4079d3') or numbers.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ParameterSetName = PathSet)]
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ParameterSetName = IdSet)]
    [AddressTransformation]
    public ulong[] Address { get; set; } = Array.Empty<ulong>();

    /// <summary>An ELF file; addresses are its virtual addresses (as addr2line -e takes them).</summary>
    [Parameter(Mandatory = true, ParameterSetName = PathSet)]
    [Alias("FullName")]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = "";

    /// <summary>A process; addresses are runtime addresses in it.</summary>
    [Parameter(Mandatory = true, ParameterSetName = IdSet)]
    [Alias("PID", "ProcessId")]
    public int Id { get; set; }

    /// <summary>StackFrame objects (or any object with Module and ModuleOffset) to resolve.</summary>
    [Parameter(Mandatory = true, ValueFromPipeline = true, ParameterSetName = FrameSet)]
    public PSObject[] InputObject { get; set; } = Array.Empty<PSObject>();

    /// <summary>Treat the addresses as return addresses: look up address-1, the call's own line.</summary>
    [Parameter]
    public SwitchParameter ReturnAddress { get; set; }

    /// <summary>Debug directories to search instead of /usr/lib/debug.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string[]? DebugDirectory { get; set; }

    protected override void BeginProcessing()
    {
        if (DebugDirectory is not null)
        {
            var dirs = DebugDirectory.Select(d => GetUnresolvedProviderPathFromPSPath(d)).ToArray();
            _cache = new SymbolCache(SymbolizerOptions.FromEnvironment().With(debugDirectories: dirs));
        }
    }

    protected override void ProcessRecord()
    {
        try
        {
            switch (ParameterSetName)
            {
                case PathSet: ResolveInFile(); break;
                case IdSet: ResolveInProcess(); break;
                default: ResolveFrames(); break;
            }
        }
        finally
        {
            foreach (string warning in _cache.TakeWarnings()) WriteWarning(warning);
        }
    }

    /// <summary>Opens the -Path module or the -Id process once per call; on failure writes the
    /// error once and resolves nothing more.</summary>
    private T? OpenOnce<T>(ref T? slot, Func<T> open, object target) where T : class
    {
        if (slot is not null || _failed) return slot;
        try
        {
            return slot = open();
        }
        catch (LeakToolsException ex)
        {
            _failed = true;
            WriteError(ErrorRecords.From(ex, target));
            return null;
        }
    }

    /// <summary>Writes the frames of one file address of <paramref name="module"/>.</summary>
    private void WriteFrames(ModuleSymbolizer module, string moduleName, ulong address, ulong moduleAddress)
    {
        ulong lookup = ReturnAddress && moduleAddress > 0 ? moduleAddress - 1 : moduleAddress;
        _frames.Clear();
        module.Resolve(lookup).AppendFrames(_frames, address, moduleName, moduleAddress, moduleAddress);
        foreach (StackFrame f in _frames) WriteObject(f);
    }

    private void ResolveInFile()
    {
        string path = GetUnresolvedProviderPathFromPSPath(Path);
        ModuleSymbolizer? module = OpenOnce(ref _module, () => _cache.GetModule(path, path), Path);
        if (module is null) return;
        foreach (ulong address in Address) WriteFrames(module, module.Path, address, address);
    }

    private void ResolveInProcess()
    {
        ProcessSymbolizer? process = OpenOnce(ref _process, () => ProcessSymbolizer.ForProcess(Id, _cache), Id);
        if (process is null) return;
        foreach (ulong address in Address)
        {
            _frames.Clear();
            process.Resolve(address, ReturnAddress, _frames);
            foreach (StackFrame f in _frames) WriteObject(f);
        }
        foreach (string problem in process.Problems) WriteVerbose(problem);
        process.Problems.Clear();
    }

    private void ResolveFrames()
    {
        foreach (PSObject item in InputObject)
        {
            string? module = item.Properties["Module"]?.Value?.ToString();
            string? function = item.Properties["Function"]?.Value?.ToString();
            object? offsetValue = item.Properties["ModuleOffset"]?.Value;
            if (!string.IsNullOrEmpty(function) || string.IsNullOrEmpty(module) || offsetValue is null || !module.StartsWith('/'))
            {
                WriteObject(item); // already resolved, or nothing to resolve with
                continue;
            }
            ulong offset, address;
            try
            {
                offset = AddressTransformationAttribute.Convert(offsetValue);
                object? a = item.Properties["Address"]?.Value;
                address = a is null ? offset : AddressTransformationAttribute.Convert(a);
            }
            catch (ArgumentTransformationMetadataException ex)
            {
                WriteError(ErrorRecords.InvalidArgument("InvalidAddress", ex.Message, item));
                continue;
            }
            ModuleSymbolizer symbolizer;
            try
            {
                symbolizer = _cache.GetModule(module, module);
            }
            catch (LeakToolsException ex)
            {
                WriteError(ErrorRecords.From(ex, module));
                WriteObject(item);
                continue;
            }
            WriteFrames(symbolizer, module, address, offset);
        }
    }
}
