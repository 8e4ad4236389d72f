using System.Text;

namespace LeakTools;

/// <summary>A call stack as one line of text, innermost first, for CSV columns and narrow places:
/// <c>leak_here (fixture.c:12) &lt;- handle (fixture.c:30) &lt;- 0x1139 (libfoo.so) &lt;- 0x7f3a2b0c</c>.
/// Frames with a function name show it with the file's base name and line; frames without one show
/// the address within their module (what addr2line -e takes) in hex, or the bare address. The text
/// is escaped with <see cref="TerminalText.Escape"/>.</summary>
public static class StackText
{
    public const string Separator = " <- ";

    public static string Format(IEnumerable<StackFrame?>? frames)
    {
        if (frames is null) return "";
        var sb = new StringBuilder();
        foreach (StackFrame? f in frames)
        {
            if (f is null) continue;
            if (sb.Length > 0) sb.Append(Separator);
            sb.Append(Frame(f));
        }
        return TerminalText.Escape(sb.ToString())!;
    }

    /// <summary>One frame: "func (file.c:12)", "func (in libfoo.so)", "0x1139 (libfoo.so)" or "0x7f3a2b0c".</summary>
    public static string Frame(StackFrame f)
    {
        string module = f.ModuleName;
        if (f.Function is not null)
        {
            if (f.File is not null)
            {
                string file = Path.GetFileName(f.File);
                return f.Line is null ? $"{f.Function} ({file})" : $"{f.Function} ({file}:{f.Line})";
            }
            return module.Length == 0 ? f.Function : $"{f.Function} (in {module})";
        }
        return module.Length == 0 ? $"0x{f.Address:x}" : $"0x{f.ModuleOffset:x} ({module})";
    }
}
