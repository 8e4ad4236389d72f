using System.Globalization;
using System.Management.Automation;
using LeakTools.Core;
using LeakTools.Core.Monitoring;

namespace LeakTools.Commands;

/// <summary>Measure-MemoryTrend: is a process's memory growing? Takes samples from the pipeline
/// (Watch-ProcessMemory, Get-MemoryHistory, Get-ProcessPss, or Import-Csv rows) and emits one
/// <see cref="MemoryTrend"/> per process.</summary>
[Cmdlet(VerbsDiagnostic.Measure, "MemoryTrend")]
[OutputType(typeof(MemoryTrend))]
public sealed class MeasureMemoryTrendCommand : PSCmdlet
{
    private readonly Dictionary<(int Id, string Name), List<TrendPoint>> _series = new();
    private readonly List<(int Id, string Name)> _order = new();
    private SampleFields.Field? _field;
    private int _skippedNull;

    /// <summary>A sample: a LeakTools.ProcessMemory, or any object with Timestamp and the measured
    /// property (Id and Name group the samples per process).</summary>
    [Parameter(Mandatory = true, ValueFromPipeline = true)]
    public PSObject? InputObject { get; set; }

    /// <summary>The memory figure to judge: Pss (default), Uss, Rss, Swap, PrivateDirty, Anonymous...
    /// or any numeric column of the input.</summary>
    [Parameter(Position = 0)]
    [ArgumentCompleter(typeof(SizePropertyCompleter))]
    [ValidateNotNullOrEmpty]
    public string Property { get; set; } = "Pss";

    /// <summary>Slower growth than this many bytes per hour is Stable, however significant.</summary>
    [Parameter]
    [ValidateRange(0, long.MaxValue)]
    public long MinimumGrowth { get; set; }

    /// <summary>How sure the trend test must be: 0.95 means a Mann-Kendall p-value below 0.05.</summary>
    [Parameter]
    [ValidateRange(0.5, 0.999999)]
    public double Confidence { get; set; } = 0.95;

    protected override void BeginProcessing() => _field = SampleFields.Find(Property);

    protected override void ProcessRecord()
    {
        if (InputObject is null) return;
        object baseObject = InputObject.BaseObject;
        if (baseObject is ProcessMemory m && _field is not null)
        {
            if (_field.Get(m) is long v) Add(m.Id, m.Name, m.Timestamp, v);
            else _skippedNull++;
            return;
        }

        object? time = Value(InputObject, "Timestamp", required: true);
        object? value = Value(InputObject, Property, required: true);
        object? id = Value(InputObject, "Id", required: false);
        string name = Value(InputObject, "Name", required: false)?.ToString() ?? "";

        if (!TryTime(time, out DateTime timestamp))
        {
            WriteError(Invalid("Timestamp", time));
            return;
        }
        if (value is null || value is string { Length: 0 })
        {
            _skippedNull++;
            return;
        }
        if (!TrySize(value, out long size))
        {
            WriteError(Invalid(Property, value));
            return;
        }
        int pid = 0;
        if (id is not null && !(id is string { Length: 0 }) && !TryInt(id, out pid))
        {
            WriteError(Invalid("Id", id));
            return;
        }
        Add(pid, name, timestamp, size);
    }

    protected override void EndProcessing()
    {
        if (_skippedNull > 0) WriteVerbose($"{_skippedNull} sample(s) without a {Property} value were left out.");
        var options = new TrendOptions { MinimumGrowthPerHour = MinimumGrowth, Confidence = Confidence };
        string property = _field?.Name ?? Property;
        foreach (var key in _order) WriteObject(TrendAnalyzer.Analyze(key.Id, key.Name, property, _series[key], options));
    }

    private void Add(int id, string name, DateTime time, long value)
    {
        var key = (id, name);
        if (!_series.TryGetValue(key, out var list))
        {
            _series[key] = list = new List<TrendPoint>();
            _order.Add(key);
        }
        list.Add(new TrendPoint(time, value));
    }

    /// <summary>A property's value; a missing required one stops the command with an error that
    /// names it (a CSV without that column).</summary>
    private object? Value(PSObject input, string name, bool required)
    {
        PSPropertyInfo? p = input.Properties[name];
        if (p is null && name == "Id") p = input.Properties["PID"] ?? input.Properties["ProcessId"];
        if (p is null)
        {
            if (!required) return null;
            string columns = string.Join(", ", input.Properties.Select(x => x.Name).Take(12));
            ThrowTerminatingError(new ErrorRecord(
                new PSArgumentException($"The input has no '{name}' property (CSV column). Measure-MemoryTrend needs Timestamp and the measured property ({Property}); Id and Name group the samples per process. The input has: {columns}."),
                "MissingProperty", ErrorCategory.InvalidData, name));
        }
        object? v = p!.Value;
        return v is PSObject pso ? pso.BaseObject : v;
    }

    private ErrorRecord Invalid(string property, object? value) => new(
        new PSArgumentException($"'{value}' is not a valid {property}; the sample was left out."),
        "InvalidSampleValue", ErrorCategory.InvalidData, InputObject);

    private static bool TryTime(object? value, out DateTime time)
    {
        switch (value)
        {
            case DateTime t:
                time = t;
                return true;
            case DateTimeOffset o:
                time = o.LocalDateTime;
                return true;
            case string s:
                return SampleFields.TryParseTime(s, out time);
        }
        time = default;
        return false;
    }

    private static bool TrySize(object value, out long size)
    {
        switch (value)
        {
            case string s:
                return SampleFields.TryParseSize(s, out size);
            case IConvertible c when value is not bool and not DateTime:
                try
                {
                    size = (long)Math.Round(c.ToDouble(CultureInfo.InvariantCulture));
                    return true;
                }
                catch (Exception ex) when (ex is FormatException or InvalidCastException or OverflowException) { }
                break;
        }
        size = 0;
        return false;
    }

    private static bool TryInt(object value, out int result)
    {
        if (value is string s) return int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out result);
        try
        {
            result = Convert.ToInt32(value, CultureInfo.InvariantCulture);
            return true;
        }
        catch (Exception ex) when (ex is FormatException or InvalidCastException or OverflowException)
        {
            result = 0;
            return false;
        }
    }
}

/// <summary>Tab completion for -Property: the size fields of a sample.</summary>
public sealed class SizePropertyCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
        System.Management.Automation.Language.CommandAst commandAst, System.Collections.IDictionary fakeBoundParameters) =>
        SampleFields.SizeProperties.Where(p => p.StartsWith(wordToComplete, StringComparison.OrdinalIgnoreCase))
            .Select(p => new CompletionResult(p));
}
