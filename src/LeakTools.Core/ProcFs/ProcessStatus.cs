namespace LeakTools.Core.ProcFs;

/// <summary>The parts of /proc/PID/status LeakTools uses.</summary>
public sealed class ProcessStatus
{
    /// <summary>The kernel's comm (cut at 15 characters).</summary>
    public string Comm { get; init; } = "";
    /// <summary>State letter: R, S, D, T, t, Z, X, I.</summary>
    public char State { get; init; }
    public int Tgid { get; init; }
    public int ParentId { get; init; }
    public int TracerPid { get; init; }
    public uint RealUid { get; init; }
    public uint EffectiveUid { get; init; }
    /// <summary>True for kernel threads: "Kthread: 1" on kernels that print it, else no Vm* lines.</summary>
    public bool IsKernelThread { get; init; }
    public bool IsZombie => State is 'Z' or 'X';

    /// <summary>Parses the status text. Returns null when the text has no Name line.</summary>
    public static ProcessStatus? Parse(ReadOnlySpan<byte> content)
    {
        string? name = null;
        char state = '?';
        int tgid = 0, ppid = 0, tracer = 0;
        uint ruid = 0, euid = 0;
        int kthread = -1;
        bool hasVm = false;
        while (!content.IsEmpty)
        {
            ReadOnlySpan<byte> line = ProcLineParser.NextLine(ref content);
            if (!ProcLineParser.TrySplitKey(line, out ReadOnlySpan<byte> key, out ReadOnlySpan<byte> value)) continue;
            switch (key.Length)
            {
                case 4 when key.SequenceEqual("Name"u8):
                    name = UnescapeComm(value);
                    break;
                case 5 when key.SequenceEqual("State"u8):
                    state = value.IsEmpty ? '?' : (char)value[0];
                    break;
                case 4 when key.SequenceEqual("Tgid"u8):
                    ProcLineParser.TryParseDecimal(value, out long t);
                    tgid = (int)t;
                    break;
                case 4 when key.SequenceEqual("PPid"u8):
                    ProcLineParser.TryParseDecimal(value, out long p);
                    ppid = (int)p;
                    break;
                case 9 when key.SequenceEqual("TracerPid"u8):
                    ProcLineParser.TryParseDecimal(value, out long tr);
                    tracer = (int)tr;
                    break;
                case 3 when key.SequenceEqual("Uid"u8):
                    ParseUids(value, out ruid, out euid);
                    break;
                case 7 when key.SequenceEqual("Kthread"u8):
                    kthread = value.Length > 0 && value[0] == '1' ? 1 : 0;
                    break;
                case 6 when key.SequenceEqual("VmSize"u8):
                    hasVm = true;
                    break;
            }
        }
        if (name is null) return null;
        bool zombie = state is 'Z' or 'X';
        return new ProcessStatus
        {
            Comm = name,
            State = state,
            Tgid = tgid,
            ParentId = ppid,
            TracerPid = tracer,
            RealUid = ruid,
            EffectiveUid = euid,
            IsKernelThread = kthread >= 0 ? kthread == 1 : !hasVm && !zombie,
        };
    }

    private static void ParseUids(ReadOnlySpan<byte> value, out uint real, out uint effective)
    {
        real = effective = 0;
        int tab = value.IndexOfAny((byte)'\t', (byte)' ');
        ReadOnlySpan<byte> first = tab < 0 ? value : value[..tab];
        ProcLineParser.TryParseDecimal(first, out long r);
        real = (uint)r;
        effective = real;
        if (tab < 0) return;
        ReadOnlySpan<byte> rest = value[(tab + 1)..].TrimStart((byte)'\t').TrimStart((byte)' ');
        int tab2 = rest.IndexOfAny((byte)'\t', (byte)' ');
        if (ProcLineParser.TryParseDecimal(tab2 < 0 ? rest : rest[..tab2], out long e)) effective = (uint)e;
    }

    /// <summary>status escapes '\n' as "\n" and '\\' as "\\" in Name (proc_task_name, ESCAPE_SPACE|SPECIAL).</summary>
    private static string UnescapeComm(ReadOnlySpan<byte> value)
    {
        string s = ProcLineParser.Ascii(value);
        if (s.IndexOf('\\') < 0) return s;
        var sb = new System.Text.StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == '\\' && i + 1 < s.Length)
            {
                char c = s[++i];
                sb.Append(c switch { 'n' => '\n', 't' => '\t', 'r' => '\r', 'f' => '\f', 'v' => '\v', 'e' => '\x1b', _ => c });
            }
            else sb.Append(s[i]);
        }
        return sb.ToString();
    }
}
