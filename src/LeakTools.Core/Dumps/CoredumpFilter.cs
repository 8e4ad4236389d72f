using System.Globalization;
using LeakTools.Core.ProcFs;

namespace LeakTools.Core.Dumps;

/// <summary>/proc/PID/coredump_filter and the kernel's rule (fs/coredump.c vma_dump_size) for how
/// much of a mapping a core holds: the whole mapping, only its first page (ELF headers), or none.</summary>
public static class CoredumpFilter
{
    public const uint AnonPrivate = 1 << 0;
    public const uint AnonShared = 1 << 1;
    public const uint MappedPrivate = 1 << 2;
    public const uint MappedShared = 1 << 3;
    public const uint ElfHeaders = 1 << 4;
    public const uint HugetlbPrivate = 1 << 5;
    public const uint HugetlbShared = 1 << 6;
    /// <summary>The kernel's default (0x33): anonymous private and shared memory, ELF headers, private huge pages.</summary>
    public const uint Default = 0x33;

    public static uint Read(int pid, ProcRoot? root = null)
    {
        string? text = ProcFile.TryReadText((root ?? ProcRoot.Default).File(pid, "coredump_filter"), out _);
        return text is not null && uint.TryParse(text.Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out uint f) ? f : Default;
    }

    /// <summary>What part of a mapping goes into the core.</summary>
    public enum Part { None, FirstPage, Whole }

    /// <summary>Decides for one mapping. <paramref name="hasAnonymousPages"/> stands in for the
    /// kernel's vma->anon_vma (the mapping was written to): smaps Anonymous or Swap above 0.
    /// <paramref name="allWritable"/> goes beyond the kernel: every writable mapping whole (the heap
    /// scan needs shared file mappings too, such as .NET's memfd double mappings, which may hold pointers).</summary>
    public static Part Decide(SmapsMapping m, uint filter, bool hasAnonymousPages, bool allWritable = false)
    {
        string[] flags = m.VmFlags;
        if (flags.Contains("dd") || flags.Contains("io")) return Part.None;           // VM_DONTDUMP, VM_IO
        if (allWritable && m.Permissions.Length > 1 && m.Permissions[1] == 'w') return Part.Whole;
        if (m.Path is "[vdso]" or "[vsyscall]") return Part.Whole;                      // always dumped
        bool shared = flags.Contains("sh") || (m.Permissions.Length > 3 && m.Permissions[3] == 's');
        if (flags.Contains("ht")) return (filter & (shared ? HugetlbShared : HugetlbPrivate)) != 0 ? Part.Whole : Part.None;
        bool isFile = m.Path.StartsWith('/');
        if (shared)
        {
            bool unlinked = !isFile || m.Path.EndsWith(" (deleted)", StringComparison.Ordinal); // i_nlink == 0: shmem, memfd, /dev/zero
            return (filter & (unlinked ? AnonShared : MappedShared)) != 0 ? Part.Whole : Part.None;
        }
        if (hasAnonymousPages && (filter & AnonPrivate) != 0) return Part.Whole;
        if (!isFile) return Part.None;
        if ((filter & MappedPrivate) != 0) return Part.Whole;
        if ((filter & ElfHeaders) != 0 && m.Offset == 0 && m.Permissions.StartsWith('r')) return Part.FirstPage;
        return Part.None;
    }
}
