using System.Diagnostics;
using LeakTools.Core.Symbols;
using LeakTools.Tests.Shared;
using Xunit;
using Xunit.Abstractions;

namespace LeakTools.Core.Tests.Symbols;

/// <summary>Mutated and truncated real binaries through the ELF and DWARF readers, with a fixed
/// seed and a bounded number of iterations: every outcome must be a result (possibly a frame
/// without line) or a LeakToolsException, never another exception or a hang.</summary>
public sealed class FuzzTests(ITestOutputHelper output)
{
    private static string Sample(string name) => SymbolSamples.Path(name);

    [Theory]
    [InlineData("dwarf5-O2.elf", 2000)]
    [InlineData("dwarf4-O2.elf", 1000)]
    [InlineData("dwarf2-O1.elf", 1000)]
    [InlineData("zlib-dwarf5.elf", 1000)]
    [InlineData("zstd-dwarf5.elf", 500)]
    [InlineData("cpp-O2.elf", 500)]
    public async Task Mutated_binaries_never_crash_or_hang(string sample, int iterations)
    {
        byte[] original = File.ReadAllBytes(Sample(sample));
        List<(long Offset, long Size)> targets;
        List<ulong> addresses;
        using (var elf = ElfFile.Open(Sample(sample)))
        {
            // Aim most mutations at the headers and the debug sections.
            targets = elf.Sections.Where(s => s.Name.StartsWith(".debug_", StringComparison.Ordinal) || s.Name is ".symtab" or ".strtab" or ".dynsym" or ".rela.plt")
                .Select(s => ((long)s.Offset, (long)s.Size)).ToList();
            targets.Add((0, 64));
            targets.Add((original.Length - 64 * elf.Sections.Count, 64 * elf.Sections.Count)); // section headers sit at the end
            addresses = ElfSymbolReader.Read(elf).Where(s => s.Type == "FUNC" && s.Size > 0)
                .SelectMany(s => new[] { s.Address, s.Address + (ulong)s.Size / 2 }).Take(60).ToList();
        }

        // A fixed seed per sample (string hashes are randomized per process): failures reproduce.
        // LEAKTOOLS_FUZZ_SEED varies it for longer local runs.
        int seed = sample.Sum(c => c) * 31 + (int.TryParse(Environment.GetEnvironmentVariable("LEAKTOOLS_FUZZ_SEED"), out int extra) ? extra : 7);
        var random = new Random(seed);
        int errors = 0, resolved = 0, withLine = 0;
        var clock = Stopwatch.StartNew();
        var run = Task.Run(() =>
        {
            for (int i = 0; i < iterations; i++)
            {
                byte[] bytes = (byte[])original.Clone();
                if (i % 10 == 9)
                {
                    Array.Resize(ref bytes, random.Next(64, bytes.Length)); // truncation
                }
                else
                {
                    int flips = 1 + random.Next(8);
                    for (int k = 0; k < flips; k++)
                    {
                        var (offset, size) = targets[random.Next(targets.Count)];
                        long at = offset + random.NextInt64(Math.Max(1, size));
                        if (at >= 0 && at < bytes.Length) bytes[at] = random.Next(3) == 0 ? (byte)0xff : (byte)random.Next(256);
                    }
                }
                try
                {
                    using var cache = new SymbolCache(new SymbolizerOptions { DebugDirectories = Array.Empty<string>() });
                    ModuleSymbolizer module = cache.GetModule(bytes, "fuzz-" + i);
                    foreach (ulong a in addresses)
                    {
                        SymbolizedAddress r = module.Resolve(a);
                        Assert.NotEmpty(r.Frames);
                        resolved++;
                        if (r.HasLine) withLine++;
                    }
                    _ = module.AllSymbols();
                }
                catch (LeakToolsException ex)
                {
                    Assert.False(string.IsNullOrEmpty(ex.ErrorId));
                    errors++;
                }
            }
        });
        // A hang shows as a TimeoutException; anything but a LeakToolsException is rethrown here.
        await run.WaitAsync(TimeSpan.FromSeconds(120));
        output.WriteLine($"{sample} (seed {seed}): {iterations} mutants in {clock.ElapsedMilliseconds} ms, {errors} rejected with an error, {resolved} lookups ({withLine} with a line)");
        Assert.True(resolved > 0);
    }
}
