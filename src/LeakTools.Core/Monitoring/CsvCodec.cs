using System.Text;

namespace LeakTools.Core.Monitoring;

/// <summary>RFC 4180 CSV as Export-Csv writes it: every field in double quotes, quotes doubled,
/// comma separated, one record per line (a quoted field may hold a line break).</summary>
public static class CsvCodec
{
    public static string FormatRecord(IEnumerable<string> fields)
    {
        var sb = new StringBuilder();
        foreach (string f in fields)
        {
            if (sb.Length > 0) sb.Append(',');
            sb.Append('"').Append(f.Replace("\"", "\"\"")).Append('"');
        }
        return sb.ToString();
    }

    /// <summary>Reads records; <paramref name="complete"/> of the last one is false when the text
    /// ended inside it without a line break (a write cut short).</summary>
    public static IEnumerable<(List<string> Fields, int Line, bool Complete)> ReadRecords(TextReader reader)
    {
        var fields = new List<string>();
        var field = new StringBuilder();
        bool inQuotes = false, fieldStarted = false, any = false;
        int line = 1, recordLine = 1;
        int c;
        while ((c = reader.Read()) != -1)
        {
            char ch = (char)c;
            any = true;
            if (inQuotes)
            {
                if (ch == '"')
                {
                    if (reader.Peek() == '"') { reader.Read(); field.Append('"'); }
                    else inQuotes = false;
                }
                else
                {
                    if (ch == '\n') line++;
                    field.Append(ch);
                }
                continue;
            }
            switch (ch)
            {
                case '"' when !fieldStarted || field.Length == 0:
                    inQuotes = true;
                    fieldStarted = true;
                    break;
                case ',':
                    fields.Add(field.ToString());
                    field.Clear();
                    fieldStarted = false;
                    break;
                case '\r':
                    break;
                case '\n':
                    line++;
                    if (fields.Count > 0 || fieldStarted || field.Length > 0)
                    {
                        fields.Add(field.ToString());
                        yield return (fields, recordLine, true);
                    }
                    fields = new List<string>();
                    field.Clear();
                    fieldStarted = false;
                    any = false;
                    recordLine = line;
                    break;
                default:
                    field.Append(ch);
                    fieldStarted = true;
                    break;
            }
        }
        if (any && (fields.Count > 0 || fieldStarted || field.Length > 0))
        {
            fields.Add(field.ToString());
            yield return (fields, recordLine, false);
        }
    }
}
