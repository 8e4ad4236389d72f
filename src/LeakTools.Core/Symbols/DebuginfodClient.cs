using System.Collections.Concurrent;
using System.Net;

namespace LeakTools.Core.Symbols;

/// <summary>A small debuginfod client: GET SERVER/buildid/ID/debuginfo into the elfutils cache
/// layout (CACHE/ID/debuginfo, shared with gdb and eu-* tools). A server that cannot be reached
/// or answers with an error is remembered process-wide for <see cref="RetryAfter"/> and reported
/// once through the warning callback, so one dead server never stalls a session; a 404 is
/// remembered per build-id.</summary>
public sealed class DebuginfodClient
{
    private static readonly ConcurrentDictionary<string, DateTime> s_failedServers = new(StringComparer.Ordinal);
    private static readonly ConcurrentDictionary<string, byte> s_missing = new(StringComparer.Ordinal);
    private readonly SymbolizerOptions _options;
    private readonly Action<string> _warn;

    public DebuginfodClient(SymbolizerOptions options, Action<string> warn)
    {
        _options = options;
        _warn = warn;
    }

    /// <summary>How long a failed server is skipped.</summary>
    public static TimeSpan RetryAfter { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>Forgets failed servers and missing build-ids (tests).</summary>
    public static void ResetMemory()
    {
        s_failedServers.Clear();
        s_missing.Clear();
    }

    /// <summary>True when the server failed recently and is being skipped.</summary>
    public static bool IsSkipped(string url) =>
        s_failedServers.TryGetValue(Normalize(url), out DateTime when) && DateTime.UtcNow - when < RetryAfter;

    private static string Normalize(string url) => url.TrimEnd('/');

    /// <summary>The local path of the debug file for <paramref name="buildId"/>, downloading it if
    /// needed; null when no server has it or none answers.</summary>
    public string? FetchDebugInfo(string buildId)
    {
        if (_options.DebuginfodUrls.Count == 0 || buildId.Length < 2 || !IsHex(buildId)) return null;
        string cached = Path.Combine(_options.DebuginfodCacheDirectory, buildId, "debuginfo");
        if (File.Exists(cached) && new FileInfo(cached).Length > 0) return cached;
        if (s_missing.ContainsKey(buildId)) return null;

        foreach (string raw in _options.DebuginfodUrls)
        {
            string server = Normalize(raw);
            if (IsSkipped(server)) continue;
            try
            {
                if (TryDownload(server, buildId, cached)) return cached;
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or OperationCanceledException or IOException or UnauthorizedAccessException or UriFormatException or InvalidOperationException)
            {
                s_failedServers[server] = DateTime.UtcNow;
                string why = ex is TaskCanceledException or OperationCanceledException ? $"no answer within {_options.DebuginfodTimeout.TotalSeconds:0.#} s" : ex.Message;
                _warn($"debuginfod server {server} is unreachable ({why}); it is skipped for {RetryAfter.TotalMinutes:0} minutes and local debug information is used.");
            }
        }
        s_missing[buildId] = 0;
        return null;
    }

    private static bool IsHex(string s)
    {
        foreach (char c in s)
        {
            if (!char.IsAsciiHexDigit(c)) return false;
        }
        return true;
    }

    private bool TryDownload(string server, string buildId, string target)
    {
        using var handler = new SocketsHttpHandler { ConnectTimeout = _options.DebuginfodTimeout }; // proxies from http_proxy/no_proxy, as elfutils
        using var client = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
        using var headers = new CancellationTokenSource(_options.DebuginfodTimeout);
        using var request = new HttpRequestMessage(HttpMethod.Get, $"{server}/buildid/{buildId}/debuginfo");
        request.Headers.UserAgent.ParseAdd("LeakTools/0.1");
        using HttpResponseMessage response = client.Send(request, HttpCompletionOption.ResponseHeadersRead, headers.Token);
        if (response.StatusCode == HttpStatusCode.NotFound) return false;
        if (!response.IsSuccessStatusCode) throw new HttpRequestException($"HTTP {(int)response.StatusCode} {response.ReasonPhrase}");

        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        string temp = target + ".part" + Environment.ProcessId;
        // The body may be large: allow it ten times the answer timeout, at least a minute.
        using var body = new CancellationTokenSource(TimeSpan.FromTicks(Math.Max(TimeSpan.FromMinutes(1).Ticks, _options.DebuginfodTimeout.Ticks * 10)));
        try
        {
            using (Stream input = response.Content.ReadAsStream(body.Token))
            using (var output = new FileStream(temp, FileMode.Create, FileAccess.Write))
            {
                input.CopyTo(output);
            }
            File.Move(temp, target, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
        return true;
    }
}
