using System.Collections;
using System.Text;

namespace LeakTools;

/// <summary>An ordered, case-insensitive name → value table, for "every other field the kernel
/// printed". Indexable from PowerShell (<c>$m.Fields['KSM']</c>) and rendered as "Name=Value ..."
/// when converted to a string, so <c>Export-Csv</c> writes a readable cell.</summary>
public sealed class NamedValues : IReadOnlyDictionary<string, long>
{
    private readonly List<KeyValuePair<string, long>> _items;
    private readonly Dictionary<string, int> _index;

    public NamedValues(IEnumerable<KeyValuePair<string, long>> items)
    {
        _items = new List<KeyValuePair<string, long>>();
        _index = new Dictionary<string, int>(StringComparer.OrdinalIgnoreCase);
        foreach (var kv in items)
        {
            if (_index.TryGetValue(kv.Key, out int at))
            {
                _items[at] = kv;
                continue;
            }
            _index[kv.Key] = _items.Count;
            _items.Add(kv);
        }
    }

    public long this[string key] => _items[_index[key]].Value;

    public IEnumerable<string> Keys => _items.Select(kv => kv.Key);

    public IEnumerable<long> Values => _items.Select(kv => kv.Value);

    public int Count => _items.Count;

    public bool ContainsKey(string key) => _index.ContainsKey(key);

    public bool TryGetValue(string key, out long value)
    {
        if (_index.TryGetValue(key, out int at))
        {
            value = _items[at].Value;
            return true;
        }
        value = 0;
        return false;
    }

    public IEnumerator<KeyValuePair<string, long>> GetEnumerator() => _items.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    public override string ToString()
    {
        var sb = new StringBuilder();
        foreach (var kv in _items)
        {
            if (sb.Length > 0) sb.Append(' ');
            sb.Append(kv.Key).Append('=').Append(kv.Value);
        }
        return sb.ToString();
    }
}
