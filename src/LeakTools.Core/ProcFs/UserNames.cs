using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text;
using LeakTools.Core.Interop;

namespace LeakTools.Core.ProcFs;

/// <summary>uid → user name through getpwuid_r (so NSS sources such as LDAP work as in ps),
/// cached for the life of the process; the number itself when the uid has no name.</summary>
public static unsafe class UserNames
{
    private static readonly ConcurrentDictionary<uint, string> s_cache = new();

    public static string Lookup(uint uid) => s_cache.GetOrAdd(uid, Resolve);

    private static string Resolve(uint uid)
    {
        int size = 1024;
        while (size <= 1 << 20)
        {
            byte[] buffer = new byte[size];
            Libc.Passwd pwd;
            Libc.Passwd* result = null;
            int rc;
            fixed (byte* b = buffer)
            {
                rc = Libc.GetPwUidR(uid, &pwd, b, (nuint)size, &result);
                if (rc == 0 && result != null && pwd.pw_name != null)
                    return Encoding.UTF8.GetString(MemoryMarshal.CreateReadOnlySpanFromNullTerminated(pwd.pw_name));
            }
            if (rc != 34 /* ERANGE */) break;
            size *= 4;
        }
        return uid.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }
}
