using System.Text;

namespace LeakTools;

/// <summary>Makes text from hostile sources (process names and command lines, file names, symbol
/// names from a binary, valgrind logs) safe to print on a terminal and to write into CSV: every
/// control character becomes a visible escape, so an ESC sequence in a process name cannot move the
/// cursor, retitle the window, hide lines or overwrite the rows around it. The views and the CSV
/// columns use it; the objects keep the raw text.</summary>
public static class TerminalText
{
    /// <summary>C0 controls (tab, CR, LF and ESC included) as <c>\t \r \n \e \a \b \v \f</c> or <c>\xNN</c>,
    /// DEL as <c>\x7f</c>, C1 controls (U+0080-U+009F: CSI, OSC, ...) and the bidirectional overrides
    /// and isolates (U+202A-U+202E, U+2066-U+2069, which reorder what a terminal shows) as <c>\uNNNN</c>.
    /// Text without any of them comes back as it is (the same instance), and escaping twice gives the
    /// same text as once. Null stays null.</summary>
    public static string? Escape(string? text)
    {
        if (text is null) return null;
        int i = 0;
        while (i < text.Length && !NeedsEscape(text[i])) i++;
        if (i == text.Length) return text;
        var sb = new StringBuilder(text.Length + 16);
        sb.Append(text, 0, i);
        for (; i < text.Length; i++)
        {
            char c = text[i];
            if (!NeedsEscape(c)) { sb.Append(c); continue; }
            switch (c)
            {
                case '\t': sb.Append("\\t"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\x1b': sb.Append("\\e"); break;
                case '\a': sb.Append("\\a"); break;
                case '\b': sb.Append("\\b"); break;
                case '\v': sb.Append("\\v"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x80) sb.Append("\\x").Append(((int)c).ToString("x2"));
                    else sb.Append("\\u").Append(((int)c).ToString("x4"));
                    break;
            }
        }
        return sb.ToString();
    }

    /// <summary>True when <paramref name="text"/> holds a character <see cref="Escape"/> would change.</summary>
    public static bool IsUnsafe(string? text)
    {
        if (text is null) return false;
        foreach (char c in text) if (NeedsEscape(c)) return true;
        return false;
    }

    private static bool NeedsEscape(char c) =>
        c < 0x20 || (c >= 0x7f && c <= 0x9f) || (c >= '\u202a' && c <= '\u202e') || (c >= '\u2066' && c <= '\u2069');
}
