namespace LeakTools.Core.ProcFs;

/// <summary>One mapping's (or one process's) smaps field values: sizes in bytes, counts as
/// printed. Tracks which fields the kernel printed, so a field an old kernel lacks reads as null,
/// never as a measured 0.</summary>
public sealed class SmapsValues
{
    private readonly long[] _values = new long[SmapsFieldNames.Count];
    private uint _present;
    private List<KeyValuePair<string, long>>? _extra;

    public bool Has(SmapsField field) => (_present & (1u << (int)field)) != 0;

    public long Get(SmapsField field) => _values[(int)field];

    public long? GetOrNull(SmapsField field) => Has(field) ? _values[(int)field] : null;

    public void Set(SmapsField field, long value) => SetIndex((int)field, value);

    internal void SetIndex(int index, long value)
    {
        _values[index] = value;
        _present |= 1u << index;
    }

    /// <summary>Fields this version of LeakTools does not know (a newer kernel's), kept by name.</summary>
    public IReadOnlyList<KeyValuePair<string, long>> ExtraFields =>
        (IReadOnlyList<KeyValuePair<string, long>>?)_extra ?? Array.Empty<KeyValuePair<string, long>>();

    internal void AddExtra(string name, long value)
    {
        _extra ??= new List<KeyValuePair<string, long>>();
        for (int i = 0; i < _extra.Count; i++)
        {
            if (_extra[i].Key == name)
            {
                _extra[i] = new KeyValuePair<string, long>(name, _extra[i].Value + value);
                return;
            }
        }
        _extra.Add(new KeyValuePair<string, long>(name, value));
    }

    /// <summary>Adds every size field of <paramref name="other"/> into this set (used to total
    /// smaps mappings when the kernel has no smaps_rollup). Page sizes and flags are not summed.</summary>
    public void Accumulate(SmapsValues other)
    {
        for (int i = 0; i < SmapsFieldNames.Count; i++)
        {
            var field = (SmapsField)i;
            if (!other.Has(field) || field is SmapsField.KernelPageSize or SmapsField.MMUPageSize || SmapsFieldNames.IsCount(field))
                continue;
            SetIndex(i, (Has(field) ? _values[i] : 0) + other._values[i]);
        }
        foreach (var kv in other.ExtraFields) AddExtra(kv.Key, kv.Value);
    }

    /// <summary>Every field the kernel printed, by its kernel name, known ones first.</summary>
    public NamedValues ToNamedValues()
    {
        var items = new List<KeyValuePair<string, long>>(SmapsFieldNames.Count + (_extra?.Count ?? 0));
        for (int i = 0; i < SmapsFieldNames.Count; i++)
        {
            if (Has((SmapsField)i)) items.Add(new KeyValuePair<string, long>(SmapsFieldNames.KernelName((SmapsField)i), _values[i]));
        }
        items.AddRange(ExtraFields);
        return new NamedValues(items);
    }
}
