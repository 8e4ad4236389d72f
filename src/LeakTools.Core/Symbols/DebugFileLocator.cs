using SharpCompress.Compressors.Xz;

namespace LeakTools.Core.Symbols;

/// <summary>How a module's debug information was found.</summary>
public enum DebugInfoSource
{
    /// <summary>Neither DWARF nor a separate debug file: ELF symbols only.</summary>
    None,
    /// <summary>DWARF inside the module itself.</summary>
    Embedded,
    /// <summary>A separate file found by build-id under a debug directory.</summary>
    BuildId,
    /// <summary>A separate file named by .gnu_debuglink, its CRC checked.</summary>
    DebugLink,
    /// <summary>A separate file at DEBUGDIR/&lt;module path&gt;.debug.</summary>
    DebugPath,
    /// <summary>A file downloaded from a debuginfod server (or found in its cache).</summary>
    Debuginfod,
}

/// <summary>Finds the separate debug file of a module, in gdb's order: build-id, then
/// .gnu_debuglink (beside the module, in its .debug folder, under each debug directory; CRC32
/// checked), then DEBUGDIR/&lt;path&gt;.debug, then debuginfod. Also unpacks MiniDebugInfo.</summary>
internal static class DebugFileLocator
{
    /// <summary>Opens the best separate debug file for <paramref name="module"/>, or null.
    /// <paramref name="originalPath"/> is the module's real path (for a file read through
    /// /proc/PID/map_files it differs from the path opened).</summary>
    public static ElfFile? Find(ElfFile module, string originalPath, SymbolizerOptions options, DebuginfodClient? debuginfod, out DebugInfoSource source)
    {
        source = DebugInfoSource.None;
        string? id = module.BuildId;
        if (id is { Length: > 2 })
        {
            foreach (string root in options.DebugDirectories)
            {
                ElfFile? f = TryOpen(Path.Combine(root, ".build-id", id[..2], id[2..] + ".debug"), module);
                if (f is not null)
                {
                    source = DebugInfoSource.BuildId;
                    return f;
                }
            }
        }

        string dir = Path.GetDirectoryName(originalPath) ?? "/";
        if (module.DebugLink is { Length: > 0 } link && !link.Contains('/'))
        {
            var candidates = new List<string> { Path.Combine(dir, link), Path.Combine(dir, ".debug", link) };
            foreach (string root in options.DebugDirectories) candidates.Add(root.TrimEnd('/') + "/" + dir.TrimStart('/') + "/" + link);
            foreach (string candidate in candidates)
            {
                if (!File.Exists(candidate) || SamePath(candidate, originalPath) || SamePath(candidate, module.Path)) continue;
                uint crc;
                try
                {
                    crc = Crc32.OfFile(candidate);
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    continue;
                }
                if (crc != module.DebugLinkCrc) continue;
                ElfFile? f = TryOpen(candidate, module);
                if (f is not null)
                {
                    source = DebugInfoSource.DebugLink;
                    return f;
                }
            }
        }

        foreach (string root in options.DebugDirectories)
        {
            ElfFile? f = TryOpen(root.TrimEnd('/') + "/" + originalPath.TrimStart('/') + ".debug", module);
            if (f is not null)
            {
                source = DebugInfoSource.DebugPath;
                return f;
            }
        }

        if (id is not null && debuginfod is not null)
        {
            string? path = debuginfod.FetchDebugInfo(id);
            ElfFile? f = path is null ? null : TryOpen(path, module);
            if (f is not null)
            {
                source = DebugInfoSource.Debuginfod;
                return f;
            }
        }
        return null;
    }

    private static bool SamePath(string a, string b) =>
        string.Equals(Path.GetFullPath(a), Path.GetFullPath(b), StringComparison.Ordinal);

    /// <summary>Opens a candidate debug file; null if absent, unreadable, corrupt, or its build-id
    /// differs from the module's.</summary>
    private static ElfFile? TryOpen(string path, ElfFile module)
    {
        if (!File.Exists(path)) return null;
        ElfFile? f = null;
        try
        {
            f = ElfFile.Open(path);
            if (module.BuildId is not null && f.BuildId is not null && f.BuildId != module.BuildId)
            {
                f.Dispose();
                return null;
            }
            return f;
        }
        catch (LeakToolsException)
        {
            f?.Dispose();
            return null;
        }
    }

    /// <summary>The ELF image packed xz-compressed in .gnu_debugdata (Fedora/RHEL MiniDebugInfo):
    /// a .symtab of the functions .dynsym lacks. Null when absent; a corrupt one is ignored.</summary>
    public static ElfFile? OpenMiniDebugInfo(ElfFile module)
    {
        ElfSection? section = module.FindSection(".gnu_debugdata");
        if (section is null || section.Type == ElfSection.SHT_NOBITS || section.Size == 0) return null;
        try
        {
            byte[] packed = module.RawSection(section).ToArray();
            using var xz = new XZStream(new MemoryStream(packed));
            using var image = new MemoryStream();
            var buffer = new byte[1 << 16];
            int n;
            while ((n = xz.Read(buffer, 0, buffer.Length)) > 0)
            {
                image.Write(buffer, 0, n);
                if (image.Length > 512L << 20) return null;
            }
            return ElfFile.FromBytes(image.ToArray(), module.Path + " [.gnu_debugdata]");
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            return null;
        }
    }
}
