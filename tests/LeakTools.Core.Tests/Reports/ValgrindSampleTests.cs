using System.IO.Compression;
using System.Text;
using LeakTools.Core.Reports;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Core.Tests.Reports;

/// <summary>The valgrind parsers on checked-in reports of valgrind 3.19 (tests/samples/valgrind,
/// regenerate.sh) and the seed tutorial's valgrind 3.15 excerpts.</summary>
public class ValgrindSampleTests
{
    private static string Sample(string name) => Path.Combine(RepoPaths.Samples, "valgrind", name);

    private static ValgrindReport One(string name) => Assert.Single(ValgrindLogReader.Read(Sample(name)));

    private static LeakRecord Only(ValgrindReport r, LeakKind kind) => Assert.Single(r.Records, x => x.Kind == kind);

    [Theory]
    [InlineData("memwatch.xml")]
    [InlineData("memwatch.txt")]
    public void Memwatch_example_has_the_512_byte_leak_at_line_11_and_the_invalid_free_at_line_15(string name)
    {
        var r = One(name);
        Assert.Equal(2, r.Records.Count);

        var free = Only(r, LeakKind.InvalidFree);
        Assert.Equal("InvalidFree", free.ValgrindKind);
        Assert.Equal("Invalid free() / delete / delete[] / realloc()", free.Message);
        Assert.Equal("free", free.Frames[0].Function);
        Assert.Equal("/usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so", free.Frames[0].Module);
        Assert.Equal(("main", 15), (free.Function, free.Line));
        Assert.EndsWith("memwatch-memory.c", free.File);
        Assert.Equal(1, free.ThreadId);
        Assert.Null(free.Bytes);
        Assert.Equal(2, free.Auxiliary.Length);
        Assert.Equal("Address 0x4a40040 is 0 bytes inside a block of size 512 free'd", free.Auxiliary[0].Text);
        Assert.Equal(14, free.Auxiliary[0].Frames[1].Line); // the first free
        Assert.Equal("Block was alloc'd at", free.Auxiliary[1].Text);
        Assert.Equal(10, free.Auxiliary[1].Frames[1].Line);

        var leak = Only(r, LeakKind.DefinitelyLost);
        Assert.Equal((512L, 1L, 0L), (leak.Bytes!.Value, leak.Blocks!.Value, leak.IndirectBytes!.Value));
        Assert.Equal((1, 1), (leak.LossRecord!.Value, leak.LossRecordCount!.Value));
        Assert.Equal("512 bytes in 1 blocks are definitely lost in loss record 1 of 1", leak.Message);
        Assert.Equal(("main", 11), (leak.Function, leak.Line));
        Assert.Equal("malloc", leak.Frames[0].Function);
        Assert.Equal(0x109168UL, leak.Frames[1].Address);
        Assert.Null(leak.ThreadId);

        var s = r.Summary;
        Assert.True(s.Complete);
        Assert.Equal("memcheck", s.Tool);
        Assert.Equal("./memwatch-memory", s.Command);
        Assert.Equal((512L, 1L), (s.DefinitelyLost!.Value, s.DefinitelyLostBlocks!.Value));
        Assert.Equal(0L, s.PossiblyLost);
        Assert.Equal((2L, 2L, 0L, 0L), (s.Errors!.Value, s.ErrorContexts!.Value, s.SuppressedErrors!.Value, s.SuppressedContexts!.Value));
        Assert.All(r.Records, x => Assert.Equal(s.ProcessId, x.ProcessId));
        Assert.All(r.Records, x => Assert.Equal(Sample(name), x.Path));
    }

    [Fact]
    public void Text_log_has_the_heap_summary_and_all_leak_figures()
    {
        var s = One("memwatch.txt").Summary;
        Assert.Equal((512L, 1L), (s.InUseBytes!.Value, s.InUseBlocks!.Value));
        Assert.Equal((2L, 2L, 1024L), (s.Allocs!.Value, s.Frees!.Value, s.BytesAllocated!.Value));
        Assert.Equal((0L, 0L, 0L), (s.IndirectlyLost!.Value, s.StillReachable!.Value, s.Suppressed!.Value));
        Assert.Equal(int.Parse(File.ReadLines(Sample("memwatch.txt")).First().Split("==")[1]), s.ProcessId);
    }

    [Fact]
    public void Xml_gives_no_figure_for_leak_kinds_the_run_did_not_show()
    {
        // memwatch.xml ran with --leak-check=full only: valgrind shows definite and possible
        var s = One("memwatch.xml").Summary;
        Assert.Null(s.IndirectlyLost);
        Assert.Null(s.StillReachable);
        Assert.Null(s.InUseBytes); // the XML has no HEAP SUMMARY (Invoke-Valgrind adds it from valgrind's xtree)
        Assert.NotNull(s.Elapsed);
    }

    [Fact]
    public void Multithreaded_report_carries_thread_ids_and_names_in_both_formats()
    {
        foreach (string name in new[] { "threads.xml", "threads.txt" })
        {
            var r = One(name);
            var write = Only(r, LeakKind.InvalidWrite);
            Assert.Equal((2, "worker-1"), (write.ThreadId, write.ThreadName));
            Assert.Equal(("overflow_and_leak", 26), (write.Function, write.Line));
            Assert.Equal("Address 0x524119a is 0 bytes after a block of size 10 alloc'd", write.Auxiliary.Single().Text);
            var cond = Only(r, LeakKind.UninitCondition);
            Assert.Equal((3, "worker-2"), (cond.ThreadId, cond.ThreadName));
            Assert.Equal("Uninitialised value was created by a heap allocation", cond.Auxiliary.Single().Text); // --track-origins
            Assert.Equal(44, cond.Auxiliary.Single().Frames[1].Line);
            var syscall = Only(r, LeakKind.SyscallParam);
            Assert.Equal("Syscall param write(buf) points to uninitialised byte(s)", syscall.Message);
            Assert.Equal(3, syscall.ThreadId);
            // __libc_write is inlined into write: one ip, two frames
            Assert.True(syscall.Frames[0].IsInline);
            Assert.False(syscall.Frames[1].IsInline);
            Assert.Equal(syscall.Frames[0].Address, syscall.Frames[1].Address);
            Assert.Equal(("__libc_write", 26), (syscall.Function, syscall.Line)); // valgrind's innermost frame: glibc's wrapper
            Assert.Equal(("worker_two", 48), (syscall.Frames[2].Function, syscall.Frames[2].Line));
            Assert.All(r.Records.Where(x => ValgrindKinds.IsLeak(x.Kind)), x => Assert.Null(x.ThreadId));

            var indirect = Only(r, LeakKind.IndirectlyLost);
            Assert.Equal((64L, 67), (indirect.Bytes!.Value, indirect.Line!.Value));
            var holder = Assert.Single(r.Records, x => x.Kind == LeakKind.DefinitelyLost && x.IndirectBytes > 0);
            Assert.Equal((80L, 64L, 1L), (holder.Bytes!.Value, holder.IndirectBytes!.Value, holder.Blocks!.Value));
            Assert.Equal("80 (16 direct, 64 indirect) bytes in 1 blocks are definitely lost in loss record 4 of 5", holder.Message);
            Assert.Equal(28, Assert.Single(r.Records, x => x.Kind == LeakKind.DefinitelyLost && x.Bytes == 100).Line);
            Assert.Equal(48L, Only(r, LeakKind.PossiblyLost).Bytes);
            Assert.Equal(32L, Only(r, LeakKind.StillReachable).Bytes);

            var s = r.Summary;
            Assert.Equal((116L, 2L), (s.DefinitelyLost!.Value, s.DefinitelyLostBlocks!.Value)); // direct bytes only
            Assert.Equal((64L, 48L, 32L), (s.IndirectlyLost!.Value, s.PossiblyLost!.Value, s.StillReachable!.Value));
            Assert.Equal((6L, 6L), (s.Errors!.Value, s.ErrorContexts!.Value));
        }
    }

    [Fact]
    public void Xml_and_text_reports_of_the_same_run_agree_record_by_record()
    {
        foreach (string stem in new[] { "memwatch", "threads", "segv", "mismatch", "threads-suppressed" })
        {
            var xml = One(stem + ".xml");
            var text = One(stem + ".txt");
            Assert.Equal(xml.Records.Select(Key), text.Records.Select(Key));
            foreach (var (x, t) in xml.Records.Zip(text.Records))
            {
                Assert.Equal(x.Frames.Select(f => (f.Address, f.Function, f.Line)), t.Frames.Select(f => (f.Address, f.Function, f.Line)));
                // the text adds advice after a fatal signal ("If you believe this happened as a result of a stack overflow...")
                Assert.Equal(x.Auxiliary.Select(a => a.Text), t.Auxiliary.Take(x.Auxiliary.Length).Select(a => a.Text));
                Assert.Equal(x.Auxiliary.Select(a => a.Frames.Length), t.Auxiliary.Take(x.Auxiliary.Length).Select(a => a.Frames.Length));
            }
            foreach (var get in new Func<LeakSummary, long?>[] { s => s.DefinitelyLost, s => s.PossiblyLost, s => s.Errors, s => s.ErrorContexts, s => s.SuppressedErrors })
                Assert.Equal(get(text.Summary), get(xml.Summary));
        }

        static string Key(LeakRecord r) => $"{r.Kind} {r.Message} {r.Bytes} {r.Blocks} {r.Function} {System.IO.Path.GetFileName(r.File)} {r.Line} {r.ThreadId} {r.ThreadName}";
    }

    [Fact]
    public void Error_list_of_dash_s_sets_counts_without_repeating_records()
    {
        var r = One("threads-verbose.txt");
        Assert.Equal(6, r.Records.Count); // 3 errors + 3 leak records; the list repeats the errors
        Assert.All(r.Records.Where(x => !ValgrindKinds.IsLeak(x.Kind)), x => Assert.Equal(1L, x.Count));
        Assert.Equal((3, "worker-2"), (Only(r, LeakKind.SyscallParam).ThreadId, Only(r, LeakKind.SyscallParam).ThreadName));
        Assert.Equal(6L, r.Summary.Errors);
        Assert.Equal(32L, r.Summary.StillReachable); // the LEAK SUMMARY has it though the record is not shown
    }

    [Fact]
    public void Xml_errorcounts_set_each_errors_count()
    {
        var r = One("threads.xml");
        Assert.All(r.Records.Where(x => !ValgrindKinds.IsLeak(x.Kind)), x => Assert.Equal(1L, x.Count));
        Assert.All(r.Records.Where(x => ValgrindKinds.IsLeak(x.Kind)), x => Assert.Null(x.Count));
    }

    [Theory]
    [InlineData("threads-suppressed.xml")]
    [InlineData("threads-suppressed.txt")]
    public void Suppressed_leak_shows_in_the_suppression_counts(string name)
    {
        var r = One(name);
        Assert.DoesNotContain(r.Records, x => x.Bytes == 100);
        var s = r.Summary;
        Assert.Equal(1L, s.Suppressions["worker-one-leak"]);
        Assert.Equal((1L, 1L), (s.SuppressedErrors!.Value, s.SuppressedContexts!.Value));
        Assert.Equal((5L, 5L), (s.Errors!.Value, s.ErrorContexts!.Value));
        Assert.Equal(16L, s.DefinitelyLost);
        if (name.EndsWith(".txt")) Assert.Equal((100L, 1L), (s.Suppressed!.Value, s.SuppressedBlocks!.Value));
        else Assert.Null(s.Suppressed); // the XML has no bytes for suppressed leaks
    }

    [Theory]
    [InlineData("segv.xml")]
    [InlineData("segv.txt")]
    public void Fatal_signal_is_a_record_and_generated_suppressions_are_kept(string name)
    {
        var r = One(name);
        var fatal = Only(r, LeakKind.FatalSignal);
        Assert.Equal("Process terminating with default action of signal 11 (SIGSEGV)", fatal.Message);
        Assert.Equal("Access not within mapped region at address 0x0", fatal.Auxiliary[0].Text);
        Assert.Equal(("main", 10), (fatal.Function, fatal.Line));
        Assert.Equal("SIGSEGV", r.Summary.Signal);
        if (name.EndsWith(".txt"))
        {
            // valgrind's advice, wrapped over five lines, is one detail
            Assert.StartsWith("If you believe this happened as a result of a stack overflow in your program's main thread", fatal.Auxiliary[1].Text);
            Assert.Equal(2, fatal.Auxiliary.Length);
        }
        var write = Only(r, LeakKind.InvalidWrite);
        Assert.Equal(8, write.Line);
        Assert.Equal("{\n   <insert_a_suppression_name_here>\n   Memcheck:Addr1\n   fun:main\n}", write.Suppression);
        Assert.Contains("Memcheck:Addr4", Only(r, LeakKind.InvalidRead).Suppression);
        Assert.Equal(0L, r.Summary.DefinitelyLost);
    }

    [Theory]
    [InlineData("mismatch.xml")]
    [InlineData("mismatch.txt")]
    public void Cpp_names_with_parentheses_and_templates_keep_their_location(string name)
    {
        var r = One(name);
        var mismatch = Only(r, LeakKind.MismatchedFree);
        Assert.Equal("operator delete(void*, unsigned long)", mismatch.Frames[0].Function);
        Assert.Equal("cache::Release::operator()(char*) const", mismatch.Function);
        Assert.Equal(14, mismatch.Line);
        Assert.Equal("cache::Pool<char>::take(unsigned long)", mismatch.Auxiliary[0].Frames[1].Function);
        var node = Assert.Single(r.Records, x => x.Bytes == 72);
        Assert.StartsWith("std::__new_allocator<std::_Rb_tree_node<", node.Function);
        Assert.EndsWith("::allocate(unsigned long, void const*)", node.Function);
        Assert.EndsWith("new_allocator.h", node.File);
        Assert.Equal((124L, 76L), (Assert.Single(r.Records, x => x.Kind == LeakKind.DefinitelyLost).Bytes!.Value, r.Summary.IndirectlyLost!.Value));
    }

    [Fact]
    public void Seed_tutorial_summary_run_reads_thousands_separators()
    {
        var r = One("seed-amsHelper-summary.txt");
        Assert.Empty(r.Records);
        var s = r.Summary;
        Assert.Equal("amsHelper -f", s.Command);
        Assert.Equal((853777L, 11106L), (s.InUseBytes!.Value, s.InUseBlocks!.Value));
        Assert.Equal((21779L, 10673L, 28226706L), (s.Allocs!.Value, s.Frees!.Value, s.BytesAllocated!.Value));
        Assert.Equal((73L, 2L), (s.DefinitelyLost!.Value, s.DefinitelyLostBlocks!.Value));
        Assert.Equal((32341L, 120L), (s.PossiblyLost!.Value, s.PossiblyLostBlocks!.Value));
        Assert.Equal((821363L, 10984L), (s.StillReachable!.Value, s.StillReachableBlocks!.Value));
        Assert.Equal((0L, 0L), (s.Errors!.Value, s.Suppressed!.Value));
        Assert.True(s.Complete);
        Assert.Empty(r.Warnings);
    }

    [Fact]
    public void Seed_tutorial_loss_record_keeps_unknown_functions_and_their_modules()
    {
        var r = One("seed-amsHelper-leak.txt");
        var leak = Assert.Single(r.Records);
        Assert.Equal((72L, 1L, 2251, 3462), (leak.Bytes!.Value, leak.Blocks!.Value, leak.LossRecord!.Value, leak.LossRecordCount!.Value));
        Assert.Equal(12, leak.Frames.Length);
        Assert.Equal(("calloc", "vg_replace_malloc.c", 711), (leak.Frames[0].Function, leak.Frames[0].File, leak.Frames[0].Line));
        Assert.Equal((0x6087603UL, null, "/usr/lib64/libnss3.so"), (leak.Frames[1].Address, leak.Frames[1].Function, leak.Frames[1].Module));
        Assert.Equal("NSS_InitContext", leak.Frames[7].Function);
        Assert.Equal("/usr/lib64/librpm.so.3.2.2", leak.Frames[9].Module);
        Assert.Equal((0x441E24UL, "/usr/sbin/amsHelper"), (leak.Frames[11].Address, leak.Frames[11].Module));
        Assert.Null(leak.Function); // the first frame past calloc is ???
        Assert.Equal(771, leak.ProcessId);
        // an excerpt: no ERROR SUMMARY, so the summary is marked incomplete
        Assert.False(r.Summary.Complete);
        Assert.Contains(r.Warnings, w => w.Contains("no ERROR SUMMARY"));
    }

    [Fact]
    public void Unknown_frames_get_module_offsets_from_the_load_addresses_of_a_v_v_run()
    {
        // valgrind-stripped is a PIE: valgrind loaded it at 0x108000 (svma 0x1060, avma 0x109060)
        var expected = new[] { 0x1160UL, 0x118DUL, 0x119CUL };
        var text = One("stripped.txt");
        var leak = Only(text, LeakKind.DefinitelyLost);
        Assert.Equal(expected, leak.Frames.Skip(1).Take(3).Select(f => f.ModuleOffset));
        Assert.All(leak.Frames.Skip(1).Take(3), f => Assert.Equal(("/tmp/leaktools-samples/valgrind-stripped", (string?)null), (f.Module, f.Function)));

        var loads = ModuleLoadMap.FromLog(File.ReadLines(Sample("stripped.log")));
        Assert.Contains("/tmp/leaktools-samples/valgrind-stripped", loads.Modules);
        var xml = Assert.Single(ValgrindLogReader.Read(Sample("stripped.xml"), loads));
        Assert.Equal(expected, Only(xml, LeakKind.DefinitelyLost).Frames.Skip(1).Take(3).Select(f => f.ModuleOffset));
        // libc: avma 0x4881380 - svma 0x26380 = load bias 0x485b000
        var libc = Only(xml, LeakKind.DefinitelyLost).Frames.First(f => f.ModuleName == "libc.so.6");
        Assert.Equal(libc.Address - 0x485b000UL, libc.ModuleOffset);
        // without the commentary the PIE's offsets are unknown (0), never a guess
        Assert.All(Only(One("stripped.xml"), LeakKind.DefinitelyLost).Frames.Skip(1).Take(3), f => Assert.Equal(0UL, f.ModuleOffset));
    }

    [Fact]
    public void Truncated_xml_gives_the_records_read_so_far_and_a_warning()
    {
        var r = One("threads-truncated.xml");
        Assert.Equal(5, r.Records.Count); // 3 errors, still reachable, possibly lost; cut inside the indirectly lost one
        Assert.False(r.Summary.Complete);
        Assert.Contains(r.Warnings, w => w.Contains("ends early") && w.Contains("5 record(s)"));
        Assert.Null(r.Summary.Errors);
        Assert.Null(r.Summary.DefinitelyLost);
        Assert.All(r.Records, x => Assert.Null(x.Count));
    }

    [Fact]
    public void Xml_cut_anywhere_never_throws_and_records_only_grow()
    {
        byte[] all = File.ReadAllBytes(Sample("threads.xml"));
        int root = Encoding.ASCII.GetString(all).IndexOf("<valgrindoutput>", StringComparison.Ordinal) + "<valgrindoutput>".Length;
        int previous = 0;
        for (int cut = root; cut <= all.Length; cut += 37)
        {
            var r = Assert.Single(ValgrindLogReader.Read(new MemoryStream(all, 0, cut), "cut.xml"));
            Assert.True(r.Records.Count >= previous);
            previous = r.Records.Count;
            Assert.False(r.Summary.Complete && cut < all.Length - 20);
        }
        Assert.Equal(8, One("threads.xml").Records.Count);
    }

    [Fact]
    public void Text_log_of_two_processes_gives_two_reports()
    {
        string both = File.ReadAllText(Sample("memwatch.txt")) + File.ReadAllText(Sample("threads.txt"));
        var reports = ValgrindLogReader.Read(new MemoryStream(Encoding.UTF8.GetBytes(both)), "both.txt");
        Assert.Equal(2, reports.Count);
        Assert.Equal((2, 8), (reports[0].Records.Count, reports[1].Records.Count));
        Assert.NotEqual(reports[0].Summary.ProcessId, reports[1].Summary.ProcessId);
    }

    [Fact]
    public void Gzip_compressed_log_reads_like_the_plain_one()
    {
        var packed = new MemoryStream();
        using (var gz = new GZipStream(packed, CompressionLevel.Fastest, leaveOpen: true))
            gz.Write(File.ReadAllBytes(Sample("memwatch.txt")));
        packed.Position = 0;
        var r = Assert.Single(ValgrindLogReader.Read(packed, "memwatch.txt.gz"));
        Assert.Equal(11, Only(r, LeakKind.DefinitelyLost).Line);
    }

    [Theory]
    [InlineData("(below main) (libc-start.c:287)", "(below main)", "libc-start.c", 287, "")]
    [InlineData("(below main)", "(below main)", null, null, "")]
    [InlineData("??? (in /usr/lib64/libnss3.so)", null, null, null, "/usr/lib64/libnss3.so")]
    [InlineData("???", null, null, null, "")]
    [InlineData("cache::Release::operator()(char*) const (mismatch.cpp:14)", "cache::Release::operator()(char*) const", "mismatch.cpp", 14, "")]
    [InlineData("f(int (*)(int)) (in /opt/lib/libx.so (deleted))", "f(int (*)(int))", null, null, "/opt/lib/libx.so (deleted)")]
    [InlineData("main (/home/u/src/a b.c:7)", "main", "/home/u/src/a b.c", 7, "")]
    public void Frame_text_splits_into_function_and_location(string text, string? function, string? file, int? line, string module)
    {
        var f = ValgrindTextParser.ParseFrame(0x10, text);
        Assert.Equal((function, file, line, module), (f.Function, f.File, f.Line, f.Module));
    }

    [Fact]
    public void Files_that_are_not_valgrind_reports_are_refused_with_NotValgrindReport()
    {
        foreach (string path in new[] { Path.Combine(RepoPaths.Samples, "proc", "modern", "meminfo"), "/bin/true" })
        {
            var e = Assert.Throws<LeakToolsException>(() => ValgrindLogReader.Read(path));
            Assert.Equal(("NotValgrindReport", FailureKind.InvalidData), (e.ErrorId, e.Kind));
            Assert.Equal(path, e.Target);
        }
        var xml = Assert.Throws<LeakToolsException>(() => ValgrindLogReader.Read(new MemoryStream("<?xml version=\"1.0\"?><project/>"u8.ToArray()), "pom.xml"));
        Assert.Equal("NotValgrindReport", xml.ErrorId);
        Assert.Contains("<project>", xml.Message);
        var missing = Assert.Throws<LeakToolsException>(() => ValgrindLogReader.Read("/nonexistent/vg.xml"));
        Assert.Equal(("PathNotFound", FailureKind.NotFound), (missing.ErrorId, missing.Kind));
        var dir = Assert.Throws<LeakToolsException>(() => ValgrindLogReader.Read(RepoPaths.Samples));
        Assert.Equal("NotValgrindReport", dir.ErrorId);
    }

    [Fact]
    public void Older_protocols_leak_in_what_and_unknown_kinds_are_kept_with_a_warning()
    {
        const string xml = """
            <?xml version="1.0"?>
            <valgrindoutput>
            <protocolversion>3</protocolversion>
            <pid>42</pid>
            <tool>memcheck</tool>
            <error>
              <unique>0x7</unique>
              <tid>1</tid>
              <kind>Leak_DefinitelyLost</kind>
              <what>1,024 (24 direct, 1,000 indirect) bytes in 1 blocks are definitely lost in loss record 9 of 12</what>
              <stack><frame><ip>0x4005D4</ip><obj>/opt/app/bin/app</obj><fn>make_cache</fn></frame></stack>
            </error>
            <error>
              <unique>0x8</unique>
              <tid>4</tid>
              <kind>InvalidSizeAndAlignment</kind>
              <what>Invalid size value: 0 alignment value: 3 (should be power of 2)</what>
              <stack><frame><ip>0x4005E0</ip><fn>aligned_alloc</fn></frame></stack>
              <xauxwhat><text>Address 0x5a is on thread 4's stack</text><file>x.c</file><line>3</line></xauxwhat>
            </error>
            <errorcounts><pair><count>3</count><unique>0x8</unique></pair></errorcounts>
            <suppcounts></suppcounts>
            </valgrindoutput>
            """;
        var r = Assert.Single(ValgrindLogReader.Read(new MemoryStream(Encoding.UTF8.GetBytes(xml)), "old.xml"));
        var leak = r.Records[0];
        Assert.Equal((LeakKind.DefinitelyLost, 1024L, 1000L, 1L, 9, 12), (leak.Kind, leak.Bytes!.Value, leak.IndirectBytes!.Value, leak.Blocks!.Value, leak.LossRecord!.Value, leak.LossRecordCount!.Value));
        var odd = r.Records[1];
        Assert.Equal((LeakKind.Unknown, "InvalidSizeAndAlignment", 4, 3L), (odd.Kind, odd.ValgrindKind, odd.ThreadId!.Value, odd.Count!.Value));
        Assert.Equal("Address 0x5a is on thread 4's stack", odd.Auxiliary.Single().Text);
        Assert.Contains(r.Warnings, w => w.Contains("'InvalidSizeAndAlignment'"));
        // --leak-check was not given (valgrind's default is summary) but the XML has the record
        Assert.Equal((24L, 4L), (r.Summary.DefinitelyLost!.Value, r.Summary.Errors!.Value));
    }
}
