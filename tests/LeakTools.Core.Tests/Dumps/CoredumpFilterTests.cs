using System.Text;
using LeakTools.Core.Dumps;
using LeakTools.Core.ProcFs;
using Xunit;

namespace LeakTools.Core.Tests.Dumps;

public class CoredumpFilterTests
{
    private static SmapsMapping Map(string header, long anonymousKb = 0, string flags = "rd wr mr mw me ac")
    {
        string text = $"{header}\nRss: 8 kB\nAnonymous: {anonymousKb} kB\nSwap: 0 kB\nVmFlags: {flags}\n";
        return SmapsParser.ParseMappings(Encoding.ASCII.GetBytes(text)).Single();
    }

    private static CoredumpFilter.Part Decide(SmapsMapping m, uint filter = CoredumpFilter.Default) =>
        CoredumpFilter.Decide(m, filter, m.Values.Get(SmapsField.Anonymous) > 0);

    [Fact]
    public void Default_filter_dumps_written_private_memory_and_elf_headers()
    {
        Assert.Equal(CoredumpFilter.Part.Whole, Decide(Map("55d0a000-55d0b000 rw-p 00000000 00:00 0   [heap]", 4)));
        Assert.Equal(CoredumpFilter.Part.None, Decide(Map("7f00000-7f10000 rw-p 00000000 00:00 0", 0)));            // never touched
        Assert.Equal(CoredumpFilter.Part.Whole, Decide(Map("7f20000-7f21000 rw-p 00003000 08:01 1234 /usr/lib/libc.so.6", 4))); // .data, written
        Assert.Equal(CoredumpFilter.Part.FirstPage, Decide(Map("7f30000-7f40000 r--p 00000000 08:01 1234 /usr/lib/libc.so.6", 0, "rd mr mw me")));
        Assert.Equal(CoredumpFilter.Part.None, Decide(Map("7f40000-7f50000 r-xp 00010000 08:01 1234 /usr/lib/libc.so.6", 0, "rd ex mr mw me")));
        Assert.Equal(CoredumpFilter.Part.Whole, Decide(Map("7f60000-7f61000 rw-s 00000000 00:01 9 /dev/zero (deleted)", 0, "rd wr sh mr mw me ms")));
        Assert.Equal(CoredumpFilter.Part.None, Decide(Map("7f70000-7f71000 rw-s 00000000 08:01 77 /var/db/table", 0, "rd wr sh mr mw me ms")));
        Assert.Equal(CoredumpFilter.Part.Whole, Decide(Map("7ffc000-7ffd000 r-xp 00000000 00:00 0   [vdso]", 0, "rd ex mr mw me de")));
        Assert.Equal(CoredumpFilter.Part.None, Decide(Map("7ffb000-7ffc000 r--p 00000000 00:00 0   [vvar]", 0, "rd mr pf io de dd")));
    }

    [Fact]
    public void Filter_bits_and_madvise_dontdump_are_honoured()
    {
        var heap = Map("55d0a000-55d0b000 rw-p 00000000 00:00 0   [heap]", 4);
        Assert.Equal(CoredumpFilter.Part.None, Decide(heap, 0x32));                                 // bit 0 cleared
        Assert.Equal(CoredumpFilter.Part.None, Decide(Map("7f00000-7f10000 rw-p 00000000 00:00 0", 4, "rd wr mr mw me ac dd")));
        var shared = Map("7f70000-7f71000 rw-s 00000000 08:01 77 /var/db/table", 0, "rd wr sh mr mw me ms");
        Assert.Equal(CoredumpFilter.Part.Whole, Decide(shared, CoredumpFilter.Default | CoredumpFilter.MappedShared));
        var text = Map("7f40000-7f50000 r-xp 00010000 08:01 1234 /usr/lib/libc.so.6", 0, "rd ex mr mw me");
        Assert.Equal(CoredumpFilter.Part.Whole, Decide(text, CoredumpFilter.Default | CoredumpFilter.MappedPrivate));
        var huge = Map("7e00000-8000000 rw-p 00000000 00:0f 5 /anon_hugepage (deleted)", 0, "rd wr mr mw me de ht");
        Assert.Equal(CoredumpFilter.Part.Whole, Decide(huge));
        Assert.Equal(CoredumpFilter.Part.None, Decide(huge, 0x13));
    }
}
