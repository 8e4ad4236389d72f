using System.Management.Automation;
using LeakTools.Core;
using LeakTools.Core.Symbols;

namespace LeakTools.Commands;

/// <summary>Get-ElfSymbol: the symbols of ELF files as objects, like nm -S / readelf -s, with
/// demangled names and PLT stubs; a stripped file shows its separate debug file's or
/// MiniDebugInfo's symbols.</summary>
[Cmdlet(VerbsCommon.Get, "ElfSymbol")]
[OutputType(typeof(ElfSymbol))]
public sealed class GetElfSymbolCommand : PSCmdlet
{
    /// <summary>ELF files.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName")]
    [ValidateNotNullOrEmpty]
    public string[] Path { get; set; } = Array.Empty<string>();

    /// <summary>Symbol names to keep (wildcards), matched against the name and the demangled name.</summary>
    [Parameter(Position = 1)]
    [SupportsWildcards]
    public string[]? Name { get; set; }

    /// <summary>Symbol types to keep: FUNC, OBJECT, NOTYPE, IFUNC, TLS, SECTION, FILE, COMMON.</summary>
    [Parameter]
    [ValidateSet("FUNC", "OBJECT", "NOTYPE", "IFUNC", "TLS", "SECTION", "FILE", "COMMON", IgnoreCase = true)]
    public string[]? Type { get; set; }

    /// <summary>Only the dynamic symbol table (.dynsym), like nm -D.</summary>
    [Parameter]
    public SwitchParameter Dynamic { get; set; }

    /// <summary>Only defined symbols (no UND), like nm --defined-only.</summary>
    [Parameter]
    public SwitchParameter DefinedOnly { get; set; }

    protected override void ProcessRecord()
    {
        WildcardPattern[]? patterns = Name?.Select(n => new WildcardPattern(n, WildcardOptions.IgnoreCase | WildcardOptions.CultureInvariant)).ToArray();
        var types = Type is null ? null : new HashSet<string>(Type, StringComparer.OrdinalIgnoreCase);
        foreach (string raw in Path)
        {
            string path = GetUnresolvedProviderPathFromPSPath(raw);
            List<ElfSymbol> symbols;
            try
            {
                ModuleSymbolizer module = SymbolCache.Shared.GetModule(path, path);
                symbols = module.AllSymbols();
            }
            catch (LeakToolsException ex)
            {
                WriteError(ErrorRecords.From(ex, raw));
                continue;
            }
            // A file with its own .symtab shows it; a stripped one shows its debug file's.
            if (symbols.Any(s => s.Table == ".symtab")) symbols.RemoveAll(s => s.Table is not (".symtab" or ".dynsym" or ".plt"));
            if (Dynamic) symbols.RemoveAll(s => s.Table != ".dynsym");
            ElfSymbolReader.Demangle(symbols);
            foreach (ElfSymbol s in symbols)
            {
                if (DefinedOnly && !s.IsDefined) continue;
                if (types is not null && !types.Contains(s.Type)) continue;
                if (patterns is not null && !patterns.Any(p => p.IsMatch(s.Name) || p.IsMatch(s.Demangled))) continue;
                WriteObject(s);
            }
        }
    }
}
