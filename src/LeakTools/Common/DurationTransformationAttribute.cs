using System.Management.Automation;
using LeakTools.Core;

namespace LeakTools.Commands;

/// <summary>Put on every TimeSpan parameter (-Expire, -Duration, -Interval, timeouts): a bare
/// number means seconds (<c>-Interval 0.5</c>), strings like "10s"/"5m"/"00:01:00" are parsed, a
/// TimeSpan passes through. Without it PowerShell would turn 10 into ten ticks.</summary>
[AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
public sealed class DurationTransformationAttribute : ArgumentTransformationAttribute
{
    public override object Transform(EngineIntrinsics engineIntrinsics, object inputData)
    {
        object? value = inputData is PSObject pso ? pso.BaseObject : inputData;
        switch (value)
        {
            case null:
                return inputData!;
            case TimeSpan:
                return value;
            case int or long or short or byte or sbyte or uint or ulong or ushort or double or float or decimal:
                double seconds = Convert.ToDouble(value, System.Globalization.CultureInfo.InvariantCulture);
                if (DurationParser.TryFromSeconds(seconds, out TimeSpan fromNumber)) return fromNumber;
                break;
            case string s:
                if (DurationParser.TryParse(s, out TimeSpan parsed)) return parsed;
                break;
            case Array array:
                var list = new object[array.Length];
                for (int i = 0; i < array.Length; i++) list[i] = Transform(engineIntrinsics, array.GetValue(i)!);
                return list;
        }
        throw new ArgumentTransformationMetadataException(
            $"Cannot convert '{value}' to a duration. Give seconds as a number (0.5, 10), a unit (500ms, 10s, 5m, 2h) or a TimeSpan (00:01:00).");
    }
}
