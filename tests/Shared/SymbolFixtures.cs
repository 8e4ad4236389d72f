using System.Security.Cryptography;
using System.Text;

namespace LeakTools.Tests.Shared;

/// <summary>One build of the symbols fixture: the binary to symbolize, the unstripped binary
/// addr2line reads as the reference, and the debug directories the symbolizer is given.</summary>
public sealed record SymbolVariant(string Name, string Binary, string Reference, string[] DebugDirectories, bool LinesExpected, bool IsCpp = false);

/// <summary>Builds tests/fixtures/symbols (C: symbols-main.c + symbols-util.c; C++: symbols-cpp.cpp)
/// in the variants the symbolizer must read: -O0/-O2, DWARF 2 to 5, PIE and non-PIE,
/// -ffunction-sections with --gc-sections, split debug files found by .gnu_debuglink and by
/// build-id under a private debug root, and a stripped binary with MiniDebugInfo made with the
/// gdb manual's recipe (as Fedora ships them). Cached by source text and recipe under the fixture
/// cache; nothing is written outside it (never into /usr/lib/debug).</summary>
public static class SymbolFixtures
{
    private static readonly object s_lock = new();
    private const int RecipeVersion = 3;

    public static string SourceDir => Path.Combine(RepoPaths.Fixtures, "symbols");

    private static string Hash(string extra)
    {
        var sb = new StringBuilder(extra).Append(RecipeVersion);
        foreach (string f in Directory.GetFiles(SourceDir).OrderBy(f => f, StringComparer.Ordinal)) sb.Append(File.ReadAllText(f));
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString()))).Substring(0, 16).ToLowerInvariant();
    }

    /// <summary>Compiles the C fixture (or the C++ one) with <paramref name="flags"/>; returns the binary.</summary>
    public static string Build(string flags, string name, bool cpp = false)
    {
        string dir = Path.Combine(FixtureBuilder.CacheDir, "symbols-" + Hash(flags + (cpp ? "c++" : "c")));
        string output = Path.Combine(dir, name);
        lock (s_lock)
        {
            if (File.Exists(output)) return output;
            Directory.CreateDirectory(dir);
            File.SetUnixFileMode(FixtureBuilder.CacheDir, (UnixFileMode)0x1ED);
            File.SetUnixFileMode(dir, (UnixFileMode)0x1ED);
            string temp = output + ".tmp" + Environment.ProcessId;
            var args = flags.Split(' ', StringSplitOptions.RemoveEmptyEntries).ToList();
            args.AddRange(new[] { "-o", temp });
            if (cpp) args.Add(Path.Combine(SourceDir, "symbols-cpp.cpp"));
            else args.AddRange(new[] { Path.Combine(SourceDir, "symbols-main.c"), Path.Combine(SourceDir, "symbols-util.c") });
            Tools.Run(cpp ? "g++" : "gcc", args.ToArray());
            File.Move(temp, output, overwrite: true);
            return output;
        }
    }

    /// <summary>Every variant of the parity test.</summary>
    public static List<SymbolVariant> AllVariants()
    {
        var list = new List<SymbolVariant>();
        void Plain(string name, string flags, bool cpp = false)
        {
            string b = Build(flags, name, cpp);
            list.Add(new SymbolVariant(name, b, b, Array.Empty<string>(), true, cpp));
        }
        Plain("O0-dwarf5-pie", "-O0 -g");
        Plain("O2-dwarf5-pie", "-O2 -g");
        Plain("O2-dwarf4-pie", "-O2 -gdwarf-4");
        Plain("O2-dwarf5-nopie", "-O2 -g -fno-pie -no-pie");
        Plain("O0-dwarf4-nopie", "-O0 -gdwarf-4 -fno-pie -no-pie");
        Plain("O1-dwarf3", "-O1 -gdwarf-3");
        Plain("O1-dwarf2", "-O1 -gdwarf-2");
        Plain("O2-function-sections", "-O2 -g -ffunction-sections -Wl,--gc-sections");
        Plain("cpp-O0", "-O0 -g", cpp: true);
        Plain("cpp-O2", "-O2 -g", cpp: true);

        string o2 = Build("-O2 -g", "O2-dwarf5-pie");
        list.Add(DebugLinkVariant(o2));
        list.Add(BuildIdVariant(o2));
        list.Add(MiniDebugInfoVariant(o2));
        return list;
    }

    /// <summary>Stripped binary + .gnu_debuglink to a debug file beside it (objcopy --only-keep-debug).</summary>
    public static SymbolVariant DebugLinkVariant(string original)
    {
        string dir = Path.Combine(Path.GetDirectoryName(original)!, "debuglink");
        string binary = Path.Combine(dir, "fixture-debuglink");
        lock (s_lock)
        {
            if (!File.Exists(binary))
            {
                Directory.CreateDirectory(dir);
                string debug = Path.Combine(dir, "fixture-debuglink.debug");
                Tools.Run("objcopy", "--only-keep-debug", original, debug);
                string temp = binary + ".tmp";
                Tools.Run("objcopy", "--strip-all", original, temp);
                Tools.Run("sh", "-c", $"cd '{dir}' && objcopy --add-gnu-debuglink=fixture-debuglink.debug '{temp}'");
                File.Move(temp, binary, overwrite: true);
            }
        }
        return new SymbolVariant("split-debuglink", binary, original, Array.Empty<string>(), true);
    }

    /// <summary>Stripped binary (no debuglink) whose debug file sits at ROOT/.build-id/xx/rest.debug
    /// in a private root.</summary>
    public static SymbolVariant BuildIdVariant(string original)
    {
        string dir = Path.Combine(Path.GetDirectoryName(original)!, "buildid");
        string root = Path.Combine(dir, "debug-root");
        string binary = Path.Combine(dir, "fixture-buildid");
        lock (s_lock)
        {
            if (!File.Exists(binary))
            {
                Directory.CreateDirectory(dir);
                string id = BuildId(original);
                string target = Path.Combine(root, ".build-id", id[..2], id[2..] + ".debug");
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                Tools.Run("objcopy", "--only-keep-debug", original, target);
                string temp = binary + ".tmp";
                Tools.Run("objcopy", "--strip-all", original, temp);
                File.Move(temp, binary, overwrite: true);
            }
        }
        return new SymbolVariant("split-buildid", binary, original, new[] { root }, true);
    }

    /// <summary>Stripped binary carrying MiniDebugInfo, made with the gdb manual's recipe.</summary>
    public static SymbolVariant MiniDebugInfoVariant(string original)
    {
        string dir = Path.Combine(Path.GetDirectoryName(original)!, "minidebuginfo");
        string binary = Path.Combine(dir, "fixture-minidebuginfo");
        lock (s_lock)
        {
            if (!File.Exists(binary))
            {
                Directory.CreateDirectory(dir);
                string script = $@"set -e
cd '{dir}'
nm -D '{original}' --format=posix --defined-only | awk '{{ print $1 }}' | sort > dynsyms
nm '{original}' --format=posix --defined-only | awk '{{ if ($2 == ""T"" || $2 == ""t"" || $2 == ""D"") print $1 }}' | sort > funcsyms
comm -13 dynsyms funcsyms > keep_symbols
objcopy --only-keep-debug '{original}' debug
objcopy -S --remove-section .gdb_index --remove-section .comment --keep-symbols=keep_symbols debug mini_debuginfo
strip --strip-all -R .comment -o stripped '{original}'
rm -f mini_debuginfo.xz
xz mini_debuginfo
objcopy --add-section .gnu_debugdata=mini_debuginfo.xz stripped
mv stripped '{binary}'
rm -f debug dynsyms funcsyms";
                Tools.Run("sh", "-c", script);
            }
        }
        return new SymbolVariant("minidebuginfo", binary, original, Array.Empty<string>(), false);
    }

    public static string BuildId(string binary)
    {
        string notes = Tools.Run("readelf", "-n", binary);
        int at = notes.IndexOf("Build ID:", StringComparison.Ordinal);
        if (at < 0) throw new InvalidOperationException($"{binary} has no build-id");
        return notes[(at + 9)..].Trim().Split('\n')[0].Trim();
    }
}
