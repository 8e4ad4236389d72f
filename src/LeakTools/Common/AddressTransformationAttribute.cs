using System.Globalization;
using System.Management.Automation;

namespace LeakTools.Commands;

/// <summary>Turns what users paste as addresses into UInt64: numbers as they are (negative
/// Int64 values, as PowerShell reads 0xffff... literals, keep their bits), strings as hex with or
/// without 0x (as addr2line reads them), so '0x4079d3', '4079d3', 0x4079d3 and 4225491 all work.</summary>
public sealed class AddressTransformationAttribute : ArgumentTransformationAttribute
{
    public override object Transform(EngineIntrinsics engineIntrinsics, object inputData)
    {
        object value = inputData is PSObject pso ? pso.BaseObject : inputData;
        if (value is Array array)
        {
            var result = new ulong[array.Length];
            for (int i = 0; i < array.Length; i++) result[i] = Convert(array.GetValue(i));
            return result;
        }
        return Convert(value);
    }

    public static ulong Convert(object? value)
    {
        value = value is PSObject pso ? pso.BaseObject : value;
        switch (value)
        {
            case ulong u: return u;
            case long l: return unchecked((ulong)l);
            case int i: return unchecked((ulong)(long)i);
            case uint ui: return ui;
            case short s: return unchecked((ulong)(long)s);
            case ushort us: return us;
            case byte b: return b;
            case nint n: return unchecked((ulong)(long)n);
            case nuint nu: return nu;
            case decimal d when d == decimal.Truncate(d) && d >= 0 && d <= ulong.MaxValue: return (ulong)d;
            case double f when f == Math.Floor(f) && f >= 0 && f < 1.8446744073709552E19: return (ulong)f;
            case string text when TryParseHex(text, out ulong parsed): return parsed;
        }
        throw new ArgumentTransformationMetadataException(
            $"'{value}' is not an address: give a hex string ('0x4079d3' or '4079d3', as addr2line reads them) or a number (0x4079d3, 4225491).");
    }

    public static bool TryParseHex(string text, out ulong value)
    {
        ReadOnlySpan<char> s = text.AsSpan().Trim();
        if (s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)) s = s[2..];
        value = 0;
        return s.Length > 0 && ulong.TryParse(s, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
    }
}
