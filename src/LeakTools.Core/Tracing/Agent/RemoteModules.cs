using LeakTools.Core.ProcFs;
using LeakTools.Core.Symbols;

namespace LeakTools.Core.Tracing.Agent;

/// <summary>One module mapped in a target process, with its load bias (runtime address minus the
/// file's virtual address, from the PT_LOAD that maps the file offset) and its dynamic symbols.</summary>
internal sealed class RemoteModule
{
    private Dictionary<string, ulong>? _symbols;

    public RemoteModule(string path, string openPath, ulong start, ulong end, ulong bias)
    {
        Path = path;
        OpenPath = openPath;
        Start = start;
        End = end;
        Bias = bias;
    }

    /// <summary>The path as the target sees it.</summary>
    public string Path { get; }

    /// <summary>Where we read it (through /proc/PID/root or map_files when needed).</summary>
    public string OpenPath { get; }

    public ulong Start { get; }
    public ulong End { get; set; }
    public ulong Bias { get; }

    public string FileName => System.IO.Path.GetFileName(Path);

    public bool IsLibc => FileName.StartsWith("libc.so", StringComparison.Ordinal) || FileName.StartsWith("libc-2.", StringComparison.Ordinal);

    public bool IsDynamicLinker => FileName.StartsWith("ld-linux", StringComparison.Ordinal) || FileName.StartsWith("ld-2.", StringComparison.Ordinal) ||
        FileName.StartsWith("ld64.so", StringComparison.Ordinal);

    public bool IsMusl => FileName.StartsWith("ld-musl", StringComparison.Ordinal) || FileName.StartsWith("libc.musl", StringComparison.Ordinal);

    public bool Contains(ulong address) => address >= Start && address < End;

    /// <summary>Runtime address of a defined function (or IFUNC resolver target is not followed:
    /// the allocator entry points and dlopen are plain functions) in .dynsym, or null.</summary>
    public ulong? Symbol(string name)
    {
        if (_symbols is null)
        {
            _symbols = new Dictionary<string, ulong>(StringComparer.Ordinal);
            try
            {
                using ElfFile elf = ElfFile.Open(OpenPath, Path);
                foreach (LeakTools.ElfSymbol s in ElfSymbolReader.Read(elf, symtab: false, dynsym: true, plt: false))
                {
                    if (s.Section == "UND" || s.Address == 0 || s.Type != "FUNC") continue;
                    string n = s.Name;
                    int at = n.IndexOf('@');
                    if (at > 0) n = n[..at];
                    _symbols.TryAdd(n, s.Address);
                }
            }
            catch (LeakToolsException)
            {
            }
            catch (IOException)
            {
            }
        }
        return _symbols.TryGetValue(name, out ulong a) ? a + Bias : null;
    }
}

/// <summary>The modules of a live process, from /proc/PID/maps.</summary>
internal static class RemoteModules
{
    public static List<RemoteModule> Read(int pid, ProcRoot root)
    {
        string path = root.File(pid, "maps");
        int errno = ProcFile.TryRead(path, out ReadOnlySpan<byte> text);
        if (errno != 0) throw ProcErrors.FromErrno(errno, pid, path);
        var modules = new List<RemoteModule>();
        var byPath = new Dictionary<string, RemoteModule>(StringComparer.Ordinal);
        foreach (ModuleMapping m in ProcessSymbolizer.ParseMaps(System.Text.Encoding.UTF8.GetString(text), root, pid))
        {
            if (m.Path.StartsWith('[')) continue;
            if (byPath.TryGetValue(m.Path, out RemoteModule? known))
            {
                if (m.End > known.End) known.End = m.End;
                continue;
            }
            string open = m.OpenPath ?? m.Path;
            ulong bias = m.Start;
            try
            {
                using ElfFile elf = ElfFile.Open(open, m.Path);
                if (elf.TryFileOffsetToAddress(m.FileOffset, out ulong vaddr)) bias = m.Start - vaddr;
            }
            catch (Exception ex) when (ex is LeakToolsException or IOException or UnauthorizedAccessException)
            {
                continue;
            }
            var module = new RemoteModule(m.Path, open, m.Start, m.End, bias);
            byPath[m.Path] = module;
            modules.Add(module);
        }
        return modules;
    }
}
