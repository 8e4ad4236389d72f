using System.Runtime.InteropServices;

namespace LeakTools.Core.Interop;

/// <summary>C++ demangling through libstdc++'s <c>__cxa_demangle</c> (what addr2line -C and gdb
/// print). Where libstdc++ is absent, names stay mangled.</summary>
public static unsafe partial class CxxDemangler
{
    private static readonly Lazy<nint> s_demangle = new(Load);

    private static nint Load()
    {
        foreach (string name in new[] { "libstdc++.so.6", "libstdc++.so" })
        {
            if (NativeLibrary.TryLoad(name, out nint lib) && NativeLibrary.TryGetExport(lib, "__cxa_demangle", out nint fn)) return fn;
        }
        return 0;
    }

    [LibraryImport("libc", EntryPoint = "free")]
    private static partial void Free(void* pointer);

    /// <summary>True when libstdc++'s demangler could be loaded.</summary>
    public static bool IsAvailable => s_demangle.Value != 0;

    /// <summary>True for Itanium-ABI mangled names (<c>_Z...</c>).</summary>
    public static bool IsMangled(string name) => name.Length > 2 && name[0] == '_' && name[1] == 'Z';

    /// <summary>The demangled name, or <paramref name="name"/> itself when it is not mangled,
    /// does not demangle, or libstdc++ is missing.</summary>
    public static string Demangle(string name)
    {
        if (!IsMangled(name)) return name;
        nint fn = s_demangle.Value;
        if (fn == 0) return name;
        int max = System.Text.Encoding.UTF8.GetMaxByteCount(name.Length) + 1;
        byte[]? rented = max > 1024 ? new byte[max] : null;
        Span<byte> bytes = rented ?? stackalloc byte[max];
        int n = System.Text.Encoding.UTF8.GetBytes(name, bytes);
        bytes[n] = 0;
        int status;
        byte* result;
        fixed (byte* p = bytes)
        {
            result = ((delegate* unmanaged<byte*, byte*, nuint*, int*, byte*>)fn)(p, null, null, &status);
        }
        if (result == null) return name;
        try
        {
            return status == 0 ? Marshal.PtrToStringUTF8((nint)result) ?? name : name;
        }
        finally
        {
            Free(result);
        }
    }
}
