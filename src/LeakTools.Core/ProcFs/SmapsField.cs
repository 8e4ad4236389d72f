namespace LeakTools.Core.ProcFs;

/// <summary>The numeric fields of /proc/PID/smaps and smaps_rollup, in kernel order.</summary>
public enum SmapsField
{
    Size,
    KernelPageSize,
    MMUPageSize,
    Rss,
    Pss,
    PssDirty,
    PssAnon,
    PssFile,
    PssShmem,
    SharedClean,
    SharedDirty,
    PrivateClean,
    PrivateDirty,
    Referenced,
    Anonymous,
    Ksm,
    LazyFree,
    AnonHugePages,
    ShmemPmdMapped,
    FilePmdMapped,
    SharedHugetlb,
    PrivateHugetlb,
    Swap,
    SwapPss,
    Locked,
    ThpEligible,
    ProtectionKey,
}

/// <summary>Kernel spelling of each <see cref="SmapsField"/> and whether it is a size in kB.</summary>
public static class SmapsFieldNames
{
    public const int Count = (int)SmapsField.ProtectionKey + 1;

    private static readonly string[] s_names =
    {
        "Size", "KernelPageSize", "MMUPageSize", "Rss", "Pss", "Pss_Dirty", "Pss_Anon", "Pss_File",
        "Pss_Shmem", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty", "Referenced",
        "Anonymous", "KSM", "LazyFree", "AnonHugePages", "ShmemPmdMapped", "FilePmdMapped",
        "Shared_Hugetlb", "Private_Hugetlb", "Swap", "SwapPss", "Locked", "THPeligible", "ProtectionKey",
    };

    private static readonly byte[][] s_utf8 = Array.ConvertAll(s_names, System.Text.Encoding.ASCII.GetBytes);

    /// <summary>The name as the kernel prints it ("Pss_Dirty").</summary>
    public static string KernelName(SmapsField field) => s_names[(int)field];

    /// <summary>True for fields that are counts or flags, not sizes.</summary>
    public static bool IsCount(SmapsField field) => field is SmapsField.ThpEligible or SmapsField.ProtectionKey;

    /// <summary>Finds the field for a kernel key; <paramref name="hint"/> is the index after the
    /// last match, since lines come in kernel order, which makes the lookup O(1) in practice.</summary>
    public static int Lookup(ReadOnlySpan<byte> key, int hint)
    {
        for (int i = 0; i < Count; i++)
        {
            int index = (hint + i) % Count;
            if (key.SequenceEqual(s_utf8[index])) return index;
        }
        return -1;
    }

    /// <summary>Finds the field by kernel name or enum name (case-insensitive); -1 if unknown.</summary>
    public static int Lookup(string name)
    {
        for (int i = 0; i < Count; i++)
        {
            if (string.Equals(s_names[i], name, StringComparison.OrdinalIgnoreCase) ||
                string.Equals(((SmapsField)i).ToString(), name, StringComparison.OrdinalIgnoreCase))
                return i;
        }
        return -1;
    }
}
