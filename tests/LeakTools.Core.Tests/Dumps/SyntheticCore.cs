using System.Diagnostics;
using LeakTools.Core.Dumps;
using LeakTools.Core.Tracing;

namespace LeakTools.Core.Tests.Dumps;

/// <summary>Writes small but complete x86-64 cores (NT_PRSTATUS, NT_PRPSINFO, NT_SIGINFO, NT_AUXV,
/// NT_FILE, one PT_LOAD of known bytes) with the same note builder the snapshotter uses, for
/// catalog tests that need realistic files in abrt/systemd-coredump layouts.</summary>
internal static class SyntheticCore
{
    public const ulong DataAddress = 0x7f0000001000;

    public static byte[] Build(int pid, string comm, string args, int signal, uint uid = 0)
    {
        var nb = new CoreNoteBuilder();
        var thread = new ThreadInfo { Tid = pid, Registers = new UserRegisters { Rip = 0x401000, Rsp = DataAddress + 0x800 } };
        nb.Add("CORE", ElfCore.NT_PRSTATUS, CoreNoteBuilder.Prstatus(thread, signal));
        nb.Add("CORE", ElfCore.NT_PRPSINFO, CoreNoteBuilder.Prpsinfo(new ProcessInfo { Pid = pid, Uid = uid, Comm = comm, Arguments = args, State = 'R' }));
        nb.Add("CORE", ElfCore.NT_SIGINFO, CoreNoteBuilder.Siginfo(signal));
        byte[] auxv = new byte[32];
        BitConverter.TryWriteBytes(auxv.AsSpan(0), 9UL);          // AT_ENTRY
        BitConverter.TryWriteBytes(auxv.AsSpan(8), 0x401000UL);
        nb.Add("CORE", ElfCore.NT_AUXV, auxv);
        nb.Add("CORE", ElfCore.NT_FILE, CoreNoteBuilder.FileNote(new[] { (0x400000UL, 0x402000UL, 0UL, $"/usr/sbin/{comm}") }));
        byte[] notes = nb.ToArray();
        long dataOffset = ElfCore.AlignUp(ElfCore.NotesOffset(1) + notes.Length, ElfCore.PageSize);
        var seg = new CoreSegment(DataAddress, 0x2000, dataOffset, 0x1000, ElfCore.PF_R | ElfCore.PF_W);
        byte[] file = new byte[dataOffset + 0x1000];
        ElfCore.Headers(new[] { seg }, notes.Length).CopyTo(file, 0);
        notes.CopyTo(file, ElfCore.NotesOffset(1));
        for (int i = 0; i < 0x1000; i++) file[dataOffset + i] = (byte)(i * 7);
        return file;
    }

    /// <summary>Compresses with the system's zstd/xz/lz4 tool, as systemd-coredump would store it.</summary>
    public static void Compress(string path, string tool)
    {
        var psi = new ProcessStartInfo(tool) { RedirectStandardError = true };
        foreach (string a in tool switch { "zstd" => new[] { "-q", "--rm", path }, "xz" => new[] { "-q", path }, _ => new[] { "-q", "--rm", path, path + ".lz4" } })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{tool} failed: {p.StandardError.ReadToEnd()}");
    }
}
