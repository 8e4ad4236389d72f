using LeakTools.Core.Monitoring;
using Xunit;

namespace LeakTools.Core.Tests.Monitoring;

public class TrendStatisticsTests
{
    [Fact]
    public void Theil_Sen_ignores_a_single_spike_that_least_squares_follows()
    {
        double[] x = Enumerable.Range(0, 21).Select(i => (double)i).ToArray();
        double[] y = x.Select(v => 100 + 3 * v).ToArray();
        y[20] += 10_000; // one huge spike, at the end where it pulls a least-squares line hardest
        Assert.Equal(3, TrendStatistics.TheilSenSlope(x, y), 9);

        // Least squares would be pulled far off by it; this shows the spike is really influential.
        double mx = x.Average(), my = y.Average();
        double ols = x.Zip(y).Sum(p => (p.First - mx) * (p.Second - my)) / x.Sum(v => (v - mx) * (v - mx));
        Assert.True(Math.Abs(ols - 3) > 0.5, $"OLS slope {ols}");
    }

    [Fact]
    public void Theil_Sen_skips_pairs_with_the_same_time()
    {
        // Two samples per second, as a CSV with whole-second timestamps gives them.
        double[] x = { 0, 0, 1, 1, 2, 2, 3, 3 };
        double[] y = { 0, 5, 10, 15, 20, 25, 30, 35 };
        Assert.Equal(10, TrendStatistics.TheilSenSlope(x, y), 9);
        Assert.True(double.IsNaN(TrendStatistics.TheilSenSlope(new double[] { 1, 1 }, new double[] { 1, 2 })));
    }

    [Fact]
    public void Mann_Kendall_matches_a_hand_computation_with_ties()
    {
        // y = 1 2 2 3: pairs (1,2)+ (1,2)+ (1,3)+ (2,2)0 (2,3)+ (2,3)+ -> S = 5.
        // Var = [4*3*13 - (one tie group of 2: 2*1*9)] / 18 = (156 - 18) / 18 = 7.6667.
        // Z = (5 - 1) / sqrt(7.6667) = 1.44463; p = 2 (1 - Phi(1.44463)) = 0.14857.
        var r = TrendStatistics.MannKendall(new double[] { 1, 2, 2, 3 });
        Assert.Equal(5, r.S);
        Assert.Equal(138.0 / 18, r.Variance, 9);
        Assert.Equal(1.44463, r.Z, 4);
        Assert.Equal(0.14857, r.PValue, 4);
        Assert.Equal(5 / 6.0, r.Tau, 9);
    }

    [Fact]
    public void Mann_Kendall_of_a_constant_series_is_no_trend()
    {
        var r = TrendStatistics.MannKendall(Enumerable.Repeat(42.0, 30).ToArray());
        Assert.Equal(0, r.S);
        Assert.Equal(0, r.Variance, 9);
        Assert.Equal(1, r.PValue);
    }

    [Fact]
    public void Mann_Kendall_of_a_decreasing_series_is_negative_and_significant()
    {
        var r = TrendStatistics.MannKendall(Enumerable.Range(0, 20).Select(i => 100.0 - i).ToArray());
        Assert.Equal(-190, r.S);
        Assert.Equal(-1, r.Tau, 9);
        Assert.True(r.PValue < 1e-6);
    }

    [Theory]
    [InlineData(0, 0.5)]
    [InlineData(1.959964, 0.975)]
    [InlineData(-1.644854, 0.05)]
    [InlineData(3.090232, 0.999)]
    public void Normal_cdf_is_accurate(double z, double expected) => Assert.Equal(expected, TrendStatistics.NormalCdf(z), 6);

    [Fact]
    public void Quantile_interpolates_like_R_type_7()
    {
        double[] v = { 4, 1, 3, 2, 5 };
        Assert.Equal(3, TrendStatistics.Median(v.ToArray()));
        Assert.Equal(1.4, TrendStatistics.Quantile(v.ToArray(), 0.1), 9);
        Assert.Equal(4.6, TrendStatistics.Quantile(v.ToArray(), 0.9), 9);
    }
}
