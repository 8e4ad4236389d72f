using System.Globalization;

namespace LeakTools.Core.Symbols;

/// <summary>Where the symbolizer looks for separate debug information. The defaults follow gdb and
/// elfutils: /usr/lib/debug, and debuginfod servers from DEBUGINFOD_URLS with the client cache
/// of DEBUGINFOD_CACHE_PATH (else $XDG_CACHE_HOME/debuginfod_client or ~/.cache/debuginfod_client).</summary>
public sealed class SymbolizerOptions
{
    /// <summary>Roots searched for build-id (<c>ROOT/.build-id/xx/rest.debug</c>), .gnu_debuglink
    /// (<c>ROOT/&lt;module dir&gt;/&lt;link&gt;</c>) and <c>ROOT/&lt;module path&gt;.debug</c> files.</summary>
    public IReadOnlyList<string> DebugDirectories { get; init; } = new[] { "/usr/lib/debug" };

    /// <summary>Debuginfod server URLs; empty disables the client.</summary>
    public IReadOnlyList<string> DebuginfodUrls { get; init; } = Array.Empty<string>();

    /// <summary>Where downloaded debug files are kept (elfutils' layout: CACHE/BUILDID/debuginfo).</summary>
    public string DebuginfodCacheDirectory { get; init; } = DefaultCacheDirectory();

    /// <summary>How long to wait for a server to answer before it counts as unreachable.</summary>
    public TimeSpan DebuginfodTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Options from the environment: DEBUGINFOD_URLS, DEBUGINFOD_CACHE_PATH,
    /// DEBUGINFOD_TIMEOUT (seconds).</summary>
    public static SymbolizerOptions FromEnvironment()
    {
        string? urls = Environment.GetEnvironmentVariable("DEBUGINFOD_URLS");
        string? timeout = Environment.GetEnvironmentVariable("DEBUGINFOD_TIMEOUT");
        var options = new SymbolizerOptions
        {
            DebuginfodUrls = string.IsNullOrWhiteSpace(urls)
                ? Array.Empty<string>()
                : urls.Split(new[] { ' ', '\t', '\n' }, StringSplitOptions.RemoveEmptyEntries),
        };
        if (double.TryParse(timeout, NumberStyles.Float, CultureInfo.InvariantCulture, out double seconds) && seconds > 0)
            options = options.With(timeout: TimeSpan.FromSeconds(seconds));
        return options;
    }

    /// <summary>A copy with some settings replaced.</summary>
    public SymbolizerOptions With(IReadOnlyList<string>? debugDirectories = null, IReadOnlyList<string>? urls = null, string? cacheDirectory = null, TimeSpan? timeout = null) => new()
    {
        DebugDirectories = debugDirectories ?? DebugDirectories,
        DebuginfodUrls = urls ?? DebuginfodUrls,
        DebuginfodCacheDirectory = cacheDirectory ?? DebuginfodCacheDirectory,
        DebuginfodTimeout = timeout ?? DebuginfodTimeout,
    };

    private static string DefaultCacheDirectory()
    {
        string? path = Environment.GetEnvironmentVariable("DEBUGINFOD_CACHE_PATH");
        if (!string.IsNullOrEmpty(path)) return path;
        string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (!string.IsNullOrEmpty(xdg)) return Path.Combine(xdg, "debuginfod_client");
        string home = Environment.GetEnvironmentVariable("HOME") ?? "/root";
        return Path.Combine(home, ".cache", "debuginfod_client");
    }
}
