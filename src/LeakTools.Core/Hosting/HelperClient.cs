using System.Collections.Concurrent;
using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using LeakTools.Core.Interop;
using Microsoft.Win32.SafeHandles;

namespace LeakTools.Core.Hosting;

/// <summary>Starts and drives the helper host: a separate process (posix_spawn, so .NET's child
/// reaping never sees it) that does the ptrace work. Targets that pwsh itself started are then
/// not children of the tracer, so their stops reach it; if pwsh dies, the helper sees its input
/// close and detaches. Launch: <c>dotnet LeakTools.Host.dll</c> when a dotnet muxer is at hand,
/// otherwise pwsh itself with a one-line bootstrap that loads LeakTools.Core and calls
/// <see cref="HelperServer.RunOnDescriptors"/>. LEAKTOOLS_HELPER=pwsh forces the bootstrap.</summary>
public sealed unsafe class HelperClient : IDisposable
{
    private readonly int _pid;
    private readonly StreamWriter _requests;
    private readonly ConcurrentDictionary<int, BlockingCollection<HelperReply>> _pending = new();
    private static readonly object s_sharedLock = new();
    private static readonly List<HelperClient> s_shared = new();
    private volatile bool _closed;
    private readonly StringBuilder _diagnostics = new();
    private readonly Thread _replyReader;
    private int _nextId;
    private bool _disposed;

    private HelperClient(int pid, int requestFd, int replyFd, int diagnosticsFd, string launch)
    {
        _pid = pid;
        Launch = launch;
        _requests = new StreamWriter(new FileStream(new SafeFileHandle(requestFd, true), FileAccess.Write, 1), new UTF8Encoding(false))
        {
            AutoFlush = true,
            NewLine = "\n",
        };
        var replies = new FileStream(new SafeFileHandle(replyFd, true), FileAccess.Read, 1);
        _replyReader = new Thread(() => ReadReplies(replies)) { IsBackground = true, Name = "LeakTools helper replies" };
        _replyReader.Start();
        var diag = new FileStream(new SafeFileHandle(diagnosticsFd, true), FileAccess.Read, 1);
        new Thread(() => ReadDiagnostics(diag)) { IsBackground = true, Name = "LeakTools helper stderr" }.Start();
    }

    /// <summary>The helper's process id.</summary>
    public int ProcessId => _pid;

    /// <summary>How the helper was started (for -Verbose).</summary>
    public string Launch { get; }

    /// <summary>A helper shared by the cmdlet calls of this process, started on first use and
    /// restarted if it died. A helper runs one command at a time, so while every shared one is busy
    /// (a Watch-Allocation in another runspace or thread job), another is started and shared too.
    /// They live until this process ends (their input then closes).</summary>
    public static HelperClient Shared
    {
        get
        {
            lock (s_sharedLock)
            {
                foreach (HelperClient dead in s_shared.Where(h => h._closed).ToList())
                {
                    s_shared.Remove(dead);
                    dead.Dispose();
                }
                HelperClient? idle = s_shared.FirstOrDefault(h => h._pending.IsEmpty);
                if (idle is null)
                {
                    idle = Start();
                    s_shared.Add(idle);
                }
                return idle;
            }
        }
    }

    /// <summary>True when an idle shared helper is running (the next call will not pay a start).</summary>
    public static bool SharedRunning
    {
        get { lock (s_sharedLock) return s_shared.Any(h => !h._closed && h._pending.IsEmpty); }
    }

    /// <summary>Starts a helper host.</summary>
    public static HelperClient Start()
    {
        List<string> argv = LaunchCommand();
        var (reqRead, reqWrite) = Spawn.Pipe();
        var (repRead, repWrite) = Spawn.Pipe();
        var (diagRead, diagWrite) = Spawn.Pipe();
        int pid;
        try
        {
            // Its own process group: a Ctrl+C reaches pwsh, which cancels the command through the pipe.
            pid = Spawn.Start(argv, new Dictionary<int, int> { [1] = diagWrite, [2] = diagWrite, [3] = reqRead, [4] = repWrite }, ownProcessGroup: true);
        }
        catch
        {
            foreach (int fd in new[] { reqRead, reqWrite, repRead, repWrite, diagRead, diagWrite }) Libc.Close(fd);
            throw;
        }
        Libc.Close(reqRead);
        Libc.Close(repWrite);
        Libc.Close(diagWrite);
        return new HelperClient(pid, reqWrite, repRead, diagRead, string.Join(' ', argv.Take(2)));
    }

    /// <summary>The command line that starts the helper here.</summary>
    public static List<string> LaunchCommand()
    {
        string dir = Path.GetDirectoryName(typeof(HelperClient).Assembly.Location) ?? AppContext.BaseDirectory;
        string hostDll = Path.Combine(dir, "LeakTools.Host.dll");
        bool forcePwsh = Environment.GetEnvironmentVariable("LEAKTOOLS_HELPER") is "pwsh";
        string? muxer = FindMuxer();
        if (!forcePwsh && muxer is not null && File.Exists(hostDll) && File.Exists(Path.Combine(dir, "LeakTools.Host.runtimeconfig.json")))
            return new List<string> { muxer, hostDll };

        List<string>? pwsh = PwshCommand();
        if (pwsh is null)
        {
            throw new LeakToolsException(FailureKind.NotSupported, "HelperUnavailable",
                $"Cannot start the LeakTools helper process: no dotnet muxer with {hostDll}, and this process is not pwsh.");
        }
        string core = typeof(HelperClient).Assembly.Location.Replace("'", "''");
        pwsh.AddRange(new[]
        {
            "-NoProfile", "-NonInteractive", "-NoLogo", "-Command",
            $"$null = [Reflection.Assembly]::LoadFrom('{core}'); exit [LeakTools.Core.Hosting.HelperServer]::RunOnDescriptors(3, 4)",
        });
        return pwsh;
    }

    private static string? FindMuxer()
    {
        string? self = Environment.ProcessPath;
        if (self is not null && Path.GetFileName(self) == "dotnet") return self;
        string? hostPath = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (hostPath is not null && File.Exists(hostPath)) return hostPath;
        // <root>/shared/Microsoft.NETCore.App/<version>/ -> <root>/dotnet (absent for a self-contained pwsh)
        string runtimeDir = RuntimeEnvironment.GetRuntimeDirectory().TrimEnd('/');
        string? root = Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(runtimeDir)));
        if (root is not null && File.Exists(Path.Combine(root, "dotnet"))) return Path.Combine(root, "dotnet");
        return null;
    }

    private static List<string>? PwshCommand()
    {
        string? self = Environment.ProcessPath;
        if (self is null) return null;
        if (Path.GetFileName(self).StartsWith("pwsh", StringComparison.Ordinal)) return new List<string> { self };
        string? entry = Assembly.GetEntryAssembly()?.Location;
        if (Path.GetFileName(self) == "dotnet" && entry is not null && Path.GetFileName(entry) == "pwsh.dll") return new List<string> { self, entry };
        return null;
    }

    private void ReadReplies(Stream stream)
    {
        try
        {
            using var reader = new StreamReader(stream, new UTF8Encoding(false));
            string? line;
            while ((line = reader.ReadLine()) is not null)
            {
                HelperReply? reply = null;
                try { reply = JsonSerializer.Deserialize<HelperReply>(line, HelperJson.Options); }
                catch (JsonException) { lock (_diagnostics) _diagnostics.AppendLine(line); }
                if (reply is not null && _pending.TryGetValue(reply.Id, out var queue)) queue.Add(reply);
            }
        }
        catch (IOException) { }
        finally
        {
            _closed = true;
            foreach (var queue in _pending.Values) queue.CompleteAdding();
        }
    }

    private void ReadDiagnostics(Stream stream)
    {
        try
        {
            using var reader = new StreamReader(stream);
            string? line;
            while ((line = reader.ReadLine()) is not null)
            {
                lock (_diagnostics)
                {
                    _diagnostics.AppendLine(line);
                    if (_diagnostics.Length > 16384) _diagnostics.Remove(0, _diagnostics.Length - 8192);
                }
            }
        }
        catch (IOException) { }
    }

    /// <summary>Runs a command and yields its replies (items, verbose, warnings, errors) up to its
    /// Done, which is returned last. Cancelling <paramref name="cancel"/> asks the helper to stop
    /// the command; its replies still arrive until Done.</summary>
    public IEnumerable<HelperReply> Run(string command, object args, CancellationToken cancel = default)
    {
        int id = Interlocked.Increment(ref _nextId);
        var replies = new BlockingCollection<HelperReply>();
        _pending[id] = replies;
        if (_closed) replies.CompleteAdding();
        try { Send(new { id, command, args }); }
        catch (IOException) { replies.CompleteAdding(); }
        return Replies(id, replies, cancel);
    }

    private IEnumerable<HelperReply> Replies(int id, BlockingCollection<HelperReply> replies, CancellationToken cancel)
    {
        bool cancelSent = false;
        using CancellationTokenRegistration reg = cancel.Register(() =>
        {
            if (cancelSent) return;
            cancelSent = true;
            try { Send(new { id, cancel = true }); } catch (IOException) { } catch (ObjectDisposedException) { }
        });
        while (true)
        {
            HelperReply? reply;
            try
            {
                if (!replies.TryTake(out reply, Timeout.Infinite)) reply = null;
            }
            catch (InvalidOperationException) { reply = null; }
            if (reply is null)
            {
                _pending.TryRemove(id, out _);
                yield return new HelperReply
                {
                    Id = id,
                    Kind = HelperReplyKind.Done,
                    Failure = new HelperFailure
                    {
                        Kind = FailureKind.SystemError,
                        ErrorId = "HelperExited",
                        Message = $"The LeakTools helper process ({Launch}) ended unexpectedly. {Diagnostics}".TrimEnd(),
                    },
                };
                yield break;
            }
            if (reply.Kind == HelperReplyKind.Done) _pending.TryRemove(id, out _);
            yield return reply;
            if (reply.Kind == HelperReplyKind.Done) yield break;
        }
    }

    /// <summary>What the helper wrote to stdout/stderr so far.</summary>
    public string Diagnostics
    {
        get { lock (_diagnostics) return _diagnostics.ToString().Trim(); }
    }

    private void Send(object request)
    {
        string line = JsonSerializer.Serialize(request, HelperJson.Options);
        lock (_requests) _requests.WriteLine(line);
    }

    /// <summary>Closes the helper's input (it finishes or cancels its command, detaches and exits)
    /// and reaps it.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        try { _requests.Dispose(); } catch (IOException) { }
        var sw = Stopwatch.StartNew();
        int status;
        while (true)
        {
            int r = Ptrace.WaitPid(_pid, &status, Ptrace.WNOHANG);
            if (r != 0) break; // reaped, or not ours any more
            if (sw.Elapsed > TimeSpan.FromSeconds(60)) { Libc.Kill(_pid, 9); Ptrace.WaitPid(_pid, &status, 0); break; }
            Thread.Sleep(5);
        }
        _replyReader.Join(TimeSpan.FromSeconds(5));
    }
}
