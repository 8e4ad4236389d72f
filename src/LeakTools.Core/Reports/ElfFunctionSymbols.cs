using LeakTools.Core.Symbols;

namespace LeakTools.Core.Reports;

/// <summary>The function symbols (name -> value, size) of an ELF file, read with the symbolizer's
/// ELF reader: just enough to place a valgrind frame's named function in its file and so learn
/// where valgrind had loaded the object. Names are keyed both as stored and demangled (valgrind
/// prints C++ names demangled). A missing or damaged file gives no symbols, never an exception.</summary>
internal static class ElfFunctionSymbols
{
    public static Dictionary<string, (ulong Value, ulong Size)> Read(string path)
    {
        var result = new Dictionary<string, (ulong, ulong)>(StringComparer.Ordinal);
        try
        {
            using ElfFile file = ElfFile.Open(path);
            List<ElfSymbol> symbols = ElfSymbolReader.Read(file, plt: false);
            ElfSymbolReader.Demangle(symbols);
            foreach (ElfSymbol s in symbols)
            {
                if (s.Type is not ("FUNC" or "IFUNC") || s.Address == 0 || s.Size <= 0) continue;
                string name = s.Name;
                int version = name.IndexOf('@');
                if (version > 0) name = name[..version];
                result.TryAdd(name, (s.Address, (ulong)s.Size));
                if (s.Demangled.Length > 0 && s.Demangled != s.Name) result.TryAdd(s.Demangled, (s.Address, (ulong)s.Size));
            }
        }
        catch (Exception e) when (e is LeakToolsException or IOException or UnauthorizedAccessException)
        {
        }
        return result;
    }
}
