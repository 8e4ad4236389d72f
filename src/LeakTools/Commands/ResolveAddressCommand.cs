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

    private void ResolveInFile()
    {
        if (_failed) return;
        string path = GetUnresolvedProviderPathFromPSPath(Path);
        if (_module is null)
        {
            try
            {
                _module = _cache.GetModule(path, path);
            }
            catch (LeakToolsException ex)
            {
                _failed = true;
                WriteError(ErrorRecords.From(ex, Path));
                return;
            }
        }
        foreach (ulong address in Address)
        {
            ulong lookup = ReturnAddress && address > 0 ? address - 1 : address;
            _frames.Clear();
            _module.Resolve(lookup).AppendFrames(_frames, address, _module.Path, address, address);
            foreach (StackFrame f in _frames) WriteObject(f);
        }
    }

    private void ResolveInProcess()
    {
        if (_failed) return;
        if (_process is null)
        {
            try
            {
                _process = ProcessSymbolizer.ForProcess(Id, _cache);
            }
            catch (LeakToolsException ex)
            {
                _failed = true;
                WriteError(ErrorRecords.From(ex, Id));
                return;
            }
            foreach (string problem in _process.Problems) WriteVerbose(problem);
        }
        foreach (ulong address in Address)
        {
            _frames.Clear();
            _process.Resolve(address, ReturnAddress, _frames);
            foreach (StackFrame f in _frames) WriteObject(f);
        }
        foreach (string problem in _process.Problems) WriteVerbose(problem);
        _process.Problems.Clear();
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
            ulong lookup = ReturnAddress && offset > 0 ? offset - 1 : offset;
            _frames.Clear();
            symbolizer.Resolve(lookup).AppendFrames(_frames, address, module, offset, offset);
            foreach (StackFrame f in _frames) WriteObject(f);
        }
    }
}
