using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using LeakTools.Core.Tracing;

namespace LeakTools.Core.Dumps;

/// <summary>Builds the PT_NOTE segment of a core: each note is namesz, descsz, type, the owner
/// name and the descriptor, both padded to 4 bytes.</summary>
public sealed class CoreNoteBuilder
{
    private readonly MemoryStream _notes = new();

    public long Length => _notes.Length;

    public byte[] ToArray() => _notes.ToArray();

    public void Add(string owner, uint type, ReadOnlySpan<byte> desc)
    {
        byte[] name = Encoding.ASCII.GetBytes(owner + "\0");
        Span<byte> header = stackalloc byte[12];
        BinaryPrimitives.WriteUInt32LittleEndian(header, (uint)name.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header[4..], (uint)desc.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], type);
        _notes.Write(header);
        _notes.Write(name);
        Pad();
        _notes.Write(desc);
        Pad();
    }

    private void Pad()
    {
        while (_notes.Length % 4 != 0) _notes.WriteByte(0);
    }

    /// <summary>struct elf_prstatus for one thread.</summary>
    public static byte[] Prstatus(ThreadInfo thread, int signal)
    {
        byte[] d = new byte[ElfCore.PrstatusSize];
        Span<byte> s = d;
        BinaryPrimitives.WriteInt32LittleEndian(s, signal);                 // pr_info.si_signo
        BinaryPrimitives.WriteInt16LittleEndian(s[12..], (short)signal);    // pr_cursig
        BinaryPrimitives.WriteUInt64LittleEndian(s[16..], thread.SignalsPending);
        BinaryPrimitives.WriteUInt64LittleEndian(s[24..], thread.SignalsBlocked);
        BinaryPrimitives.WriteInt32LittleEndian(s[32..], thread.Tid);
        BinaryPrimitives.WriteInt32LittleEndian(s[36..], thread.ParentId);
        BinaryPrimitives.WriteInt32LittleEndian(s[40..], thread.ProcessGroup);
        BinaryPrimitives.WriteInt32LittleEndian(s[44..], thread.Session);
        WriteTimeval(s[48..], thread.UserTime);
        WriteTimeval(s[64..], thread.SystemTime);
        UserRegisters regs = thread.Registers;
        MemoryMarshal.AsBytes(MemoryMarshal.CreateReadOnlySpan(ref regs, 1)).CopyTo(s[ElfCore.PrstatusRegOffset..]);
        BinaryPrimitives.WriteInt32LittleEndian(s[328..], thread.FpRegisters is null ? 0 : 1); // pr_fpvalid
        return d;
    }

    private static void WriteTimeval(Span<byte> s, TimeSpan t)
    {
        long micros = t.Ticks / 10;
        BinaryPrimitives.WriteInt64LittleEndian(s, micros / 1_000_000);
        BinaryPrimitives.WriteInt64LittleEndian(s[8..], micros % 1_000_000);
    }

    /// <summary>struct elf_prpsinfo: state, uid/gid, pids, comm and the first 80 bytes of the arguments.</summary>
    public static byte[] Prpsinfo(ProcessInfo p)
    {
        byte[] d = new byte[ElfCore.PrpsinfoSize];
        Span<byte> s = d;
        int stateIndex = "RSDTZW".IndexOf(p.State == 't' ? 'T' : p.State);
        if (stateIndex < 0) stateIndex = 0;
        s[0] = (byte)stateIndex;
        s[1] = (byte)(p.State == '\0' ? 'R' : p.State);
        s[2] = (byte)(p.State == 'Z' ? 1 : 0);
        s[3] = (byte)(sbyte)p.Nice;
        BinaryPrimitives.WriteUInt64LittleEndian(s[8..], p.Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(s[16..], p.Uid);
        BinaryPrimitives.WriteUInt32LittleEndian(s[20..], p.Gid);
        BinaryPrimitives.WriteInt32LittleEndian(s[24..], p.Pid);
        BinaryPrimitives.WriteInt32LittleEndian(s[28..], p.ParentId);
        BinaryPrimitives.WriteInt32LittleEndian(s[32..], p.ProcessGroup);
        BinaryPrimitives.WriteInt32LittleEndian(s[36..], p.Session);
        byte[] comm = Encoding.UTF8.GetBytes(p.Comm);
        comm.AsSpan(0, Math.Min(comm.Length, 15)).CopyTo(s[40..]);
        // pr_psargs: argv joined by spaces, cut at ELF_PRARGSZ-1 as the kernel does.
        byte[] args = Encoding.UTF8.GetBytes(p.Arguments);
        args.AsSpan(0, Math.Min(args.Length, 79)).CopyTo(s[56..]);
        return d;
    }

    /// <summary>NT_FILE: count, page size, (start, end, offset in pages) per file mapping, then the names.</summary>
    public static byte[] FileNote(IReadOnlyList<(ulong Start, ulong End, ulong Offset, string Path)> files)
    {
        var ms = new MemoryStream();
        byte[] w = new byte[8];
        void U64(ulong v) { BinaryPrimitives.WriteUInt64LittleEndian(w, v); ms.Write(w); }
        U64((ulong)files.Count);
        U64(ElfCore.PageSize);
        foreach (var f in files) { U64(f.Start); U64(f.End); U64(f.Offset / ElfCore.PageSize); }
        foreach (var f in files)
        {
            ms.Write(Encoding.UTF8.GetBytes(f.Path));
            ms.WriteByte(0);
        }
        return ms.ToArray();
    }

    /// <summary>A siginfo_t with only signo/errno/code set.</summary>
    public static byte[] Siginfo(int signal, int code = 0)
    {
        byte[] d = new byte[ElfCore.SiginfoSize];
        BinaryPrimitives.WriteInt32LittleEndian(d, signal);
        BinaryPrimitives.WriteInt32LittleEndian(d.AsSpan(8), code);
        return d;
    }
}

/// <summary>What a core records about one thread.</summary>
public sealed class ThreadInfo
{
    public int Tid { get; init; }
    public int ParentId { get; init; }
    public int ProcessGroup { get; init; }
    public int Session { get; init; }
    public ulong SignalsPending { get; init; }
    public ulong SignalsBlocked { get; init; }
    public TimeSpan UserTime { get; init; }
    public TimeSpan SystemTime { get; init; }
    public UserRegisters Registers { get; init; }
    public byte[]? FpRegisters { get; init; }
    public byte[]? XState { get; init; }
    public byte[]? SignalInfo { get; init; }
}

/// <summary>What a core records about the process (NT_PRPSINFO).</summary>
public sealed class ProcessInfo
{
    public int Pid { get; init; }
    public int ParentId { get; init; }
    public int ProcessGroup { get; init; }
    public int Session { get; init; }
    public char State { get; init; }
    public int Nice { get; init; }
    public ulong Flags { get; init; }
    public uint Uid { get; init; }
    public uint Gid { get; init; }
    public string Comm { get; init; } = "";
    public string Arguments { get; init; } = "";
}
