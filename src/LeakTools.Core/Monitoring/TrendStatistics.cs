namespace LeakTools.Core.Monitoring;

/// <summary>The robust statistics behind a trend verdict: the Theil–Sen slope (median of pairwise
/// slopes, unmoved by a single spike), the Mann–Kendall trend test with the tie correction of its
/// variance and a two-sided p-value from the normal approximation, and plain order statistics.</summary>
public static class TrendStatistics
{
    /// <summary>Median of the slopes (y_j - y_i) / (x_j - x_i) over all pairs with x_j &gt; x_i.
    /// Pairs with equal x (two samples in the same second of a CSV) are skipped. NaN when no pair has
    /// distinct x.</summary>
    public static double TheilSenSlope(ReadOnlySpan<double> x, ReadOnlySpan<double> y)
    {
        if (x.Length != y.Length) throw new ArgumentException("x and y differ in length.");
        int n = x.Length;
        var slopes = new double[Math.Max(0, n * (n - 1) / 2)];
        int count = 0;
        for (int i = 0; i < n; i++)
        {
            for (int j = i + 1; j < n; j++)
            {
                double dx = x[j] - x[i];
                if (dx == 0) continue;
                slopes[count++] = (y[j] - y[i]) / dx;
            }
        }
        return count == 0 ? double.NaN : Median(slopes.AsSpan(0, count));
    }

    /// <summary>Mann–Kendall test on a series in time order.</summary>
    public static MannKendallResult MannKendall(ReadOnlySpan<double> y)
    {
        int n = y.Length;
        long s = 0;
        for (int i = 0; i < n - 1; i++)
        {
            double yi = y[i];
            for (int j = i + 1; j < n; j++)
                s += Math.Sign(y[j] - yi);
        }

        // Var(S) = [n(n-1)(2n+5) - sum over tie groups t(t-1)(2t+5)] / 18
        double variance = (double)n * (n - 1) * (2 * n + 5);
        double[] sorted = y.ToArray();
        Array.Sort(sorted);
        for (int i = 0; i < sorted.Length;)
        {
            int j = i + 1;
            while (j < sorted.Length && sorted[j] == sorted[i]) j++;
            double t = j - i;
            if (t > 1) variance -= t * (t - 1) * (2 * t + 5);
            i = j;
        }
        variance /= 18;

        double z = 0;
        if (variance > 0)
        {
            if (s > 0) z = (s - 1) / Math.Sqrt(variance);
            else if (s < 0) z = (s + 1) / Math.Sqrt(variance);
        }
        double p = variance > 0 ? 2 * (1 - NormalCdf(Math.Abs(z))) : 1;
        double pairs = n * (n - 1) / 2.0;
        double tau = pairs > 0 ? s / pairs : 0;
        return new MannKendallResult(s, variance, z, Math.Clamp(p, 0, 1), tau);
    }

    /// <summary>Standard normal cumulative distribution, from erfc (Numerical Recipes' erfcc, |error| &lt; 1.2e-7).</summary>
    public static double NormalCdf(double z) => 0.5 * Erfc(-z / Math.Sqrt(2));

    private static double Erfc(double x)
    {
        double z = Math.Abs(x);
        double t = 1 / (1 + 0.5 * z);
        double r = t * Math.Exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
                   t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
                   t * (-0.82215223 + t * 0.17087277)))))))));
        return x >= 0 ? r : 2 - r;
    }

    /// <summary>Median; sorts <paramref name="values"/> in place.</summary>
    public static double Median(Span<double> values) => Quantile(values, 0.5);

    /// <summary>Quantile with linear interpolation between order statistics (type 7, as R and
    /// numpy default); sorts <paramref name="values"/> in place.</summary>
    public static double Quantile(Span<double> values, double q)
    {
        if (values.Length == 0) return double.NaN;
        values.Sort();
        double h = (values.Length - 1) * q;
        int lo = (int)Math.Floor(h);
        int hi = Math.Min(lo + 1, values.Length - 1);
        return values[lo] + (h - lo) * (values[hi] - values[lo]);
    }
}

/// <summary>Mann–Kendall statistic S, its tie-corrected variance, the normal score Z (with
/// continuity correction), the two-sided p-value and Kendall's tau (S over the number of pairs).</summary>
public readonly record struct MannKendallResult(long S, double Variance, double Z, double PValue, double Tau);
