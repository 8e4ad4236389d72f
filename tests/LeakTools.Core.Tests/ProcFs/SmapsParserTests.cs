using System.Text;
using LeakTools.Core.ProcFs;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Core.Tests.ProcFs;

public class SmapsParserTests
{
    private static byte[] Sample(string relative) => File.ReadAllBytes(Path.Combine(RepoPaths.Samples, relative));

    private static string ModernPidDir() =>
        Directory.GetDirectories(Path.Combine(RepoPaths.Samples, "proc", "modern")).Single();

    [Fact]
    public void Rollup_reads_every_field_in_bytes_and_keeps_pss_components_apart()
    {
        var v = SmapsParser.ParseRollup(File.ReadAllBytes(Path.Combine(ModernPidDir(), "smaps_rollup")));
        Assert.Equal(3272L * 1024, v.Get(SmapsField.Rss));
        Assert.Equal(1910L * 1024, v.Get(SmapsField.Pss));
        Assert.Equal(1910L * 1024, v.Get(SmapsField.PssDirty));
        Assert.True(v.Has(SmapsField.PssAnon));
        // Pss_Anon + Pss_File + Pss_Shmem is Pss split by kind, not something to add to it.
        long parts = v.Get(SmapsField.PssAnon) + v.Get(SmapsField.PssFile) + v.Get(SmapsField.PssShmem);
        Assert.InRange(Math.Abs(parts - v.Get(SmapsField.Pss)), 0, 8 * 1024);
        Assert.False(v.Has(SmapsField.Size)); // the rollup has no Size line
    }

    [Fact]
    public void Mappings_parse_headers_paths_with_spaces_deleted_files_and_unknown_fields()
    {
        var maps = SmapsParser.ParseMappings(Sample("smaps-odd.txt"));
        Assert.Equal(3, maps.Count);
        var shm = maps[0];
        Assert.Equal(0x7f00a0000000UL, shm.Start);
        Assert.Equal(0x7f00a0021000UL, shm.End);
        Assert.Equal("rw-s", shm.Permissions);
        Assert.Equal("00:01", shm.Device);
        Assert.Equal(4242UL, shm.Inode);
        Assert.Equal("/dev/shm/my cache file (deleted)", shm.Path);
        Assert.Equal(32L * 1024, shm.Values.Get(SmapsField.Pss));
        Assert.Equal(1, shm.Values.Get(SmapsField.ThpEligible)); // a flag, not kB
        Assert.Equal(new[] { "rd", "wr", "sh", "mr", "mw", "me", "ms", "sd" }, shm.VmFlags);
        var extra = Assert.Single(shm.Values.ExtraFields);
        Assert.Equal("FutureCounter", extra.Key);
        Assert.Equal(12L * 1024, extra.Value);
        Assert.Equal("[stack]", maps[2].Path);
    }

    [Fact]
    public void Hugetlb_pages_are_not_counted_in_rss_or_pss()
    {
        var maps = SmapsParser.ParseMappings(Sample("smaps-odd.txt"));
        var huge = maps[1];
        Assert.Equal(4096L * 1024, huge.Values.Get(SmapsField.PrivateHugetlb));
        Assert.Equal(0, huge.Values.Get(SmapsField.Rss));
        var total = SmapsParser.Total(Sample("smaps-odd.txt"));
        Assert.Equal((64 + 0 + 20) * 1024L, total.Get(SmapsField.Rss));
        Assert.Equal((32 + 0 + 20) * 1024L, total.Get(SmapsField.Pss));
        Assert.Equal(4096L * 1024, total.Get(SmapsField.PrivateHugetlb));
    }

    [Fact]
    public void Total_of_smaps_matches_the_rollup_within_a_kilobyte_per_mapping()
    {
        string dir = ModernPidDir();
        var rollup = SmapsParser.ParseRollup(File.ReadAllBytes(Path.Combine(dir, "smaps_rollup")));
        byte[] smaps = File.ReadAllBytes(Path.Combine(dir, "smaps"));
        var total = SmapsParser.Total(smaps);
        int mappings = SmapsParser.ParseMappings(smaps).Count;
        foreach (var field in new[] { SmapsField.Rss, SmapsField.SharedClean, SmapsField.SharedDirty, SmapsField.PrivateClean,
                                      SmapsField.PrivateDirty, SmapsField.Anonymous, SmapsField.Swap, SmapsField.Referenced })
            Assert.Equal(rollup.Get(field), total.Get(field));
        // Pss is rounded down to kB per mapping in smaps but only once in the rollup.
        Assert.InRange(total.Get(SmapsField.Pss) - rollup.Get(SmapsField.Pss), -mappings * 1024L, mappings * 1024L);
    }

    [Fact]
    public void Old_kernel_smaps_has_no_pss_dirty_or_pss_split_and_they_stay_absent()
    {
        var total = SmapsParser.Total(Sample("proc/rhel7/15046/smaps"));
        Assert.False(total.Has(SmapsField.PssDirty));
        Assert.False(total.Has(SmapsField.PssAnon));
        Assert.False(total.Has(SmapsField.SwapPss));
        // The seed's pmap -X rows for amsHelper: Size 14516, Rss 11360, Pss 11080, Anonymous 9856 KiB.
        Assert.Equal(14516L * 1024, total.Get(SmapsField.Size));
        Assert.Equal(11360L * 1024, total.Get(SmapsField.Rss));
        Assert.Equal(11080L * 1024, total.Get(SmapsField.Pss));
        Assert.Equal(9856L * 1024, total.Get(SmapsField.Anonymous));
    }

    [Fact]
    public void Pmap_totals_of_the_captured_process_equal_the_sum_of_its_smaps()
    {
        string dir = Path.Combine(RepoPaths.Samples, "proc", "modern");
        string pmap = Directory.GetFiles(dir, "pmap-X-*.txt").Single();
        PmapTotals expected = PmapTotals.Parse(File.ReadAllLines(pmap));
        var maps = SmapsParser.ParseMappings(File.ReadAllBytes(Path.Combine(ModernPidDir(), "smaps")));
        Assert.Equal(expected["Size"], maps.Sum(m => m.Values.Get(SmapsField.Size)) / 1024);
        Assert.Equal(expected["Rss"], maps.Sum(m => m.Values.Get(SmapsField.Rss)) / 1024);
        Assert.Equal(expected["Pss"], maps.Sum(m => m.Values.Get(SmapsField.Pss)) / 1024);
        Assert.Equal(expected["Anonymous"], maps.Sum(m => m.Values.Get(SmapsField.Anonymous)) / 1024);
    }

    [Fact]
    public void Garbage_does_not_throw_and_yields_nothing()
    {
        var rnd = new Random(42);
        byte[] smaps = Sample("smaps-odd.txt");
        for (int i = 0; i < 500; i++)
        {
            byte[] copy = (byte[])smaps.Clone();
            for (int k = 0; k < 20; k++) copy[rnd.Next(copy.Length)] = (byte)rnd.Next(256);
            int cut = rnd.Next(copy.Length);
            _ = SmapsParser.ParseMappings(copy.AsSpan(0, cut));
            _ = SmapsParser.Total(copy.AsSpan(0, cut));
            _ = SmapsParser.ParseRollup(copy.AsSpan(0, cut));
        }
        Assert.Empty(SmapsParser.ParseMappings(Encoding.ASCII.GetBytes("not smaps at all\n:::\n")));
        // absurd numbers overflow: they must not be taken as values either
        var v = SmapsParser.ParseRollup(Encoding.ASCII.GetBytes("Rss: 99999999999999999999999 kB\nPss: 5 kB\n"));
        Assert.False(v.Has(SmapsField.Rss));
        Assert.Equal(5 * 1024, v.Get(SmapsField.Pss));
    }
}
