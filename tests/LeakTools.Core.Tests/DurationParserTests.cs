using Xunit;

namespace LeakTools.Core.Tests;

public class DurationParserTests
{
    [Theory]
    [InlineData("0.5", 500)]
    [InlineData("10", 10_000)]
    [InlineData("500ms", 500)]
    [InlineData("10s", 10_000)]
    [InlineData("5m", 300_000)]
    [InlineData("2h", 7_200_000)]
    [InlineData("1d", 86_400_000)]
    [InlineData("00:01:30", 90_000)]
    public void Numbers_are_seconds_and_units_are_honoured(string text, double expectedMs)
    {
        Assert.True(DurationParser.TryParse(text, out TimeSpan value));
        Assert.Equal(expectedMs, value.TotalMilliseconds, 3);
    }

    [Theory]
    [InlineData("")]
    [InlineData("abc")]
    [InlineData("1e400")]
    [InlineData("10 parsecs")]
    public void Nonsense_is_refused(string text) => Assert.False(DurationParser.TryParse(text, out _));
}
