using System.Buffers.Binary;
using LeakTools.Core.ProcFs;
using LeakTools.Core.Symbols;
using LeakTools.Core.Tracing;
using LeakTools.Core.Tracing.Agent;
using Xunit;

namespace LeakTools.Core.Tests.Tracing;

/// <summary>Reads the allocation functions' relocation slots (JUMP_SLOT, GLOB_DAT) of every module
/// of a live process, as the agent patches them, and tells which point into the agent.</summary>
internal static class GotSlots
{
    private static readonly HashSet<string> Names = new(AgentProtocol.FunctionNames);

    public static (int Hooked, int Plain) Count(int pid)
    {
        List<RemoteModule> modules = RemoteModules.Read(pid, ProcRoot.Default);
        RemoteModule? agent = modules.FirstOrDefault(m => m.FileName == AgentPlacement.LibraryName);
        int hooked = 0, plain = 0;
        foreach (RemoteModule m in modules)
        {
            if (m == agent || m.IsDynamicLinker) continue;
            using ElfFile elf = ElfFile.Open(m.OpenPath, m.Path);
            ElfSection? dynsym = elf.FindSection(".dynsym"), dynstr = elf.FindSection(".dynstr");
            if (dynsym is null || dynstr is null) continue;
            byte[] syms = elf.RawSection(dynsym).ToArray(), strs = elf.RawSection(dynstr).ToArray();
            foreach (ElfSection rela in elf.Sections.Where(s => s.Type == ElfSection.SHT_RELA))
            {
                byte[] r = elf.RawSection(rela).ToArray();
                for (int i = 0; i + 24 <= r.Length; i += 24)
                {
                    ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(r.AsSpan(i));
                    ulong info = BinaryPrimitives.ReadUInt64LittleEndian(r.AsSpan(i + 8));
                    uint type = (uint)info, sym = (uint)(info >> 32);
                    if (type is not (6 or 7) || sym == 0 || (sym + 1) * 24 > syms.Length) continue;
                    int nameAt = (int)BinaryPrimitives.ReadUInt32LittleEndian(syms.AsSpan((int)sym * 24));
                    int end = Array.IndexOf(strs, (byte)0, nameAt);
                    string name = System.Text.Encoding.ASCII.GetString(strs, nameAt, end - nameAt);
                    if (!Names.Contains(name)) continue;
                    byte[] value = new byte[8];
                    if (ProcessMemoryAccess.Read(pid, m.Bias + offset, value) != 8) continue;
                    ulong target = BinaryPrimitives.ReadUInt64LittleEndian(value);
                    if (agent is not null && agent.Contains(target)) hooked++; else plain++;
                }
            }
        }
        return (hooked, plain);
    }

    public static bool Restored(int pid) => Count(pid) is { Hooked: 0, Plain: > 0 };

    public static void AssertRestored(int pid)
    {
        var (hooked, plain) = Count(pid);
        Assert.Equal(0, hooked);
        Assert.True(plain >= 4, $"only {plain} allocation slots found");
    }
}
