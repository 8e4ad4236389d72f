using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Loader;

namespace LeakTools.Core.Monitoring;

/// <summary>Finds libe_sqlite3.so for SQLitePCLRaw when LeakTools runs as a PowerShell module.
/// An application's deps.json tells .NET where a package's native assets sit
/// (runtimes/&lt;rid&gt;/native); PowerShell does not read a module's deps.json, so a plain
/// <c>[DllImport("e_sqlite3")]</c> fails with DllNotFoundException. This resolver is asked only
/// after the default probing failed, and loads the library from the runtimes folder beside
/// LeakTools.Core.dll for the running architecture (and musl or glibc).</summary>
public static class SqliteNativeLibrary
{
    private const string LibraryName = "e_sqlite3";
    private static int s_registered;

    /// <summary>The path loaded by the resolver, if it had to step in.</summary>
    public static string? LoadedFrom { get; private set; }

    public static void Register()
    {
        if (Interlocked.Exchange(ref s_registered, 1) == 1) return;
        AssemblyLoadContext own = AssemblyLoadContext.GetLoadContext(typeof(SqliteNativeLibrary).Assembly) ?? AssemblyLoadContext.Default;
        own.ResolvingUnmanagedDll += Resolve;
        if (own != AssemblyLoadContext.Default) AssemblyLoadContext.Default.ResolvingUnmanagedDll += Resolve;
    }

    private static IntPtr Resolve(Assembly assembly, string name)
    {
        if (name != LibraryName && name != "lib" + LibraryName && name != "lib" + LibraryName + ".so") return IntPtr.Zero;
        foreach (string path in Candidates())
        {
            if (File.Exists(path) && NativeLibrary.TryLoad(path, out IntPtr handle))
            {
                LoadedFrom = path;
                return handle;
            }
        }
        return IntPtr.Zero;
    }

    /// <summary>Where the library may be, best match first.</summary>
    public static IEnumerable<string> Candidates()
    {
        string dir = Path.GetDirectoryName(typeof(SqliteNativeLibrary).Assembly.Location) ?? AppContext.BaseDirectory;
        string arch = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => "x64",
            Architecture.Arm64 => "arm64",
            Architecture.Arm => "arm",
            Architecture.X86 => "x86",
            Architecture.S390x => "s390x",
            Architecture.Ppc64le => "ppc64le",
            var other => other.ToString().ToLowerInvariant(),
        };
        bool musl = Directory.Exists("/lib") && Directory.EnumerateFiles("/lib", "ld-musl-*.so.1").Any();
        string[] rids = musl ? new[] { $"linux-musl-{arch}", $"linux-{arch}" } : new[] { $"linux-{arch}" };
        foreach (string rid in rids) yield return Path.Combine(dir, "runtimes", rid, "native", "libe_sqlite3.so");
        yield return Path.Combine(dir, "libe_sqlite3.so");
    }
}
