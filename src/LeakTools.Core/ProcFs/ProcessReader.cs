namespace LeakTools.Core.ProcFs;

/// <summary>Reads who a process is and how much memory it uses. Errors come out as the typed
/// exceptions of <see cref="ProcErrors"/>: not found, exited, access denied.</summary>
public sealed class ProcessReader
{
    public ProcessReader(ProcRoot? root = null) => Root = root ?? ProcRoot.Default;

    public ProcRoot Root { get; }

    /// <summary>Reads status and cmdline. Throws <see cref="ProcessNotFoundException"/> if there is no such process.</summary>
    public ProcessIdentity ReadIdentity(int pid)
    {
        string statusPath = Root.File(pid, "status");
        int errno = ProcFile.TryRead(statusPath, out ReadOnlySpan<byte> statusText);
        if (errno != 0) throw ProcErrors.FromErrno(errno, pid, statusPath);
        ProcessStatus status = ProcessStatus.Parse(statusText)
            ?? throw new LeakToolsException(FailureKind.InvalidData, "InvalidProcStatus", $"{statusPath} has no Name line.", pid);

        string cmdlinePath = Root.File(pid, "cmdline");
        errno = ProcFile.TryRead(cmdlinePath, out ReadOnlySpan<byte> cmdline);
        if (errno != 0)
        {
            if (errno is Interop.Errno.ENOENT or Interop.Errno.ESRCH) throw new ProcessExitedException(pid);
            cmdline = default; // cmdline is world-readable; anything else leaves it empty
        }
        return ProcessIdentity.Create(pid, status, cmdline);
    }

    /// <summary>Reads the memory totals of a process: smaps_rollup, or smaps summed where the
    /// kernel has no rollup (or <see cref="ProcRoot.ForceSmaps"/>).</summary>
    public ProcessMemory ReadMemory(ProcessIdentity identity)
    {
        int pid = identity.Id;
        SmapsValues values;
        string source;
        int errno = -1;
        ReadOnlySpan<byte> text = default;
        if (!Root.ForceSmaps)
        {
            errno = ProcFile.TryRead(Root.File(pid, "smaps_rollup"), out text);
        }
        if (errno == 0)
        {
            values = SmapsParser.ParseRollup(text);
            source = "smaps_rollup";
        }
        else if (errno is -1 or Interop.Errno.ENOENT && Root.ProcessExists(pid))
        {
            string smapsPath = Root.File(pid, "smaps");
            errno = ProcFile.TryRead(smapsPath, out text);
            if (errno != 0) throw Translate(errno, identity, smapsPath);
            values = SmapsParser.Total(text);
            source = "smaps";
        }
        else
        {
            throw Translate(errno, identity, Root.File(pid, "smaps_rollup"));
        }

        if (!values.Has(SmapsField.Rss))
        {
            // Nothing printed: the mm is gone (exited between reads) or it never had one (kernel thread).
            throw new ProcessExitedException(pid);
        }
        return Build(identity, values, source);
    }

    private static LeakToolsException Translate(int errno, ProcessIdentity identity, string path)
    {
        if (errno is Interop.Errno.EACCES or Interop.Errno.EPERM)
            return new ProcessAccessDeniedException(identity.Id, path, identity.Name);
        return ProcErrors.FromErrno(errno, identity.Id, path, existedBefore: true);
    }

    internal static ProcessMemory Build(ProcessIdentity identity, SmapsValues v, string source)
    {
        long privateClean = v.Get(SmapsField.PrivateClean);
        long privateDirty = v.Get(SmapsField.PrivateDirty);
        return new ProcessMemory
        {
            Id = identity.Id,
            Name = identity.Name,
            CommandLine = identity.CommandLine,
            User = identity.User,
            Pss = v.Get(SmapsField.Pss),
            Rss = v.Get(SmapsField.Rss),
            Uss = privateClean + privateDirty,
            PrivateClean = privateClean,
            PrivateDirty = privateDirty,
            SharedClean = v.Get(SmapsField.SharedClean),
            SharedDirty = v.Get(SmapsField.SharedDirty),
            Swap = v.Get(SmapsField.Swap),
            SwapPss = v.GetOrNull(SmapsField.SwapPss),
            Anonymous = v.Get(SmapsField.Anonymous),
            PssDirty = v.GetOrNull(SmapsField.PssDirty),
            PssAnon = v.GetOrNull(SmapsField.PssAnon),
            PssFile = v.GetOrNull(SmapsField.PssFile),
            PssShmem = v.GetOrNull(SmapsField.PssShmem),
            Locked = v.Get(SmapsField.Locked),
            Source = source,
            Timestamp = DateTime.Now,
        };
    }

    /// <summary>Reads /proc/PID/smaps as one <see cref="MemoryMapping"/> per mapping.</summary>
    public List<MemoryMapping> ReadMappings(ProcessIdentity identity)
    {
        string path = Root.File(identity.Id, "smaps");
        int errno = ProcFile.TryRead(path, out ReadOnlySpan<byte> text);
        if (errno != 0) throw Translate(errno, identity, path);
        List<SmapsMapping> raw = SmapsParser.ParseMappings(text);
        if (raw.Count == 0 && !Root.ProcessExists(identity.Id)) throw new ProcessExitedException(identity.Id);
        var list = new List<MemoryMapping>(raw.Count);
        foreach (SmapsMapping m in raw) list.Add(ToMapping(identity.Id, m));
        return list;
    }

    internal static MemoryMapping ToMapping(int pid, SmapsMapping m)
    {
        SmapsValues v = m.Values;
        return new MemoryMapping
        {
            ProcessId = pid,
            Address = m.Start,
            EndAddress = m.End,
            Perm = m.Permissions,
            Offset = m.Offset,
            Device = m.Device,
            Inode = m.Inode,
            Size = v.Has(SmapsField.Size) ? v.Get(SmapsField.Size) : (long)(m.End - m.Start),
            Rss = v.Get(SmapsField.Rss),
            Pss = v.Get(SmapsField.Pss),
            PssDirty = v.GetOrNull(SmapsField.PssDirty),
            Referenced = v.Get(SmapsField.Referenced),
            Anonymous = v.Get(SmapsField.Anonymous),
            LazyFree = v.GetOrNull(SmapsField.LazyFree),
            Swap = v.Get(SmapsField.Swap),
            SwapPss = v.GetOrNull(SmapsField.SwapPss),
            Locked = v.Get(SmapsField.Locked),
            SharedClean = v.Get(SmapsField.SharedClean),
            SharedDirty = v.Get(SmapsField.SharedDirty),
            PrivateClean = v.Get(SmapsField.PrivateClean),
            PrivateDirty = v.Get(SmapsField.PrivateDirty),
            AnonHugePages = v.GetOrNull(SmapsField.AnonHugePages),
            Ksm = v.GetOrNull(SmapsField.Ksm),
            KernelPageSize = v.Get(SmapsField.KernelPageSize),
            MMUPageSize = v.Get(SmapsField.MMUPageSize),
            ThpEligible = v.GetOrNull(SmapsField.ThpEligible),
            Mapping = m.Path,
            VmFlags = m.VmFlags,
            Fields = v.ToNamedValues(),
        };
    }
}
