using System.Text.Json;
using LeakTools.Core.Dumps;

namespace LeakTools.Core.Hosting;

/// <summary>A command the helper host runs: read its arguments, stream results and messages
/// through <see cref="HelperOutput"/>, stop promptly (detaching whatever it traced) when the
/// token is cancelled — on a cancel request, stdin EOF (pwsh went away) or SIGTERM/SIGINT/SIGHUP.</summary>
public interface IHelperCommand
{
    string Name { get; }
    void Run(JsonElement args, HelperOutput output, CancellationToken cancel);
}

/// <summary>Where a running command sends its results.</summary>
public sealed class HelperOutput
{
    private readonly Action<HelperReply> _send;
    private readonly int _id;

    public HelperOutput(int id, Action<HelperReply> send)
    {
        _id = id;
        _send = send;
    }

    public void Item<T>(T value) => _send(new HelperReply { Id = _id, Kind = HelperReplyKind.Item, Data = JsonSerializer.SerializeToElement(value, HelperJson.Options) });
    public void Verbose(string message) => _send(new HelperReply { Id = _id, Kind = HelperReplyKind.Verbose, Message = message });
    public void Warning(string message) => _send(new HelperReply { Id = _id, Kind = HelperReplyKind.Warning, Message = message });
    public void Error(LeakToolsException ex) => _send(new HelperReply { Id = _id, Kind = HelperReplyKind.Error, Failure = HelperFailure.From(ex) });
}

/// <summary>The commands the helper host knows, by name. Later engines (the allocation tracer)
/// register theirs here.</summary>
public static class HelperCommands
{
    private static readonly Dictionary<string, IHelperCommand> s_commands = new(StringComparer.Ordinal);

    static HelperCommands()
    {
        Register(new SnapshotCommand());
        Register(new EchoCommand());
        Register(new WatchAllocationCommand());
    }

    public static void Register(IHelperCommand command)
    {
        lock (s_commands) s_commands[command.Name] = command;
    }

    public static IHelperCommand? Find(string name)
    {
        lock (s_commands) return s_commands.GetValueOrDefault(name);
    }
}

/// <summary>Arguments of <c>core.snapshot</c>.</summary>
public sealed class SnapshotRequest
{
    public int Pid { get; set; }
    public string Destination { get; set; } = ".";
    public string? FileName { get; set; }
    public bool Compress { get; set; }
    public SnapshotStrategy Strategy { get; set; }
    public double StopTimeoutSeconds { get; set; } = 10;
    /// <summary>Every writable mapping whole, whatever coredump_filter says (for heap analysis).</summary>
    public bool IncludeAllWritable { get; set; }
}

/// <summary><c>core.snapshot</c>: one live core of one process; streams a <see cref="CoreDump"/>.</summary>
internal sealed class SnapshotCommand : IHelperCommand
{
    public string Name => "core.snapshot";

    public void Run(JsonElement args, HelperOutput output, CancellationToken cancel)
    {
        var r = args.Deserialize<SnapshotRequest>(HelperJson.Options)!;
        var snapshotter = new CoreSnapshotter(verbose: output.Verbose);
        CoreDump dump = snapshotter.Capture(r.Pid, new SnapshotOptions
        {
            Destination = r.Destination,
            FileName = r.FileName,
            Compress = r.Compress,
            Strategy = r.Strategy,
            StopTimeout = TimeSpan.FromSeconds(r.StopTimeoutSeconds),
            IncludeAllWritable = r.IncludeAllWritable,
        }, cancel);
        output.Item(dump);
    }
}

/// <summary><c>host.echo</c>: returns its arguments and the host's pid and parent (protocol tests),
/// or with <c>{"wait":true}</c> waits until cancelled.</summary>
internal sealed class EchoCommand : IHelperCommand
{
    public string Name => "host.echo";

    public void Run(JsonElement args, HelperOutput output, CancellationToken cancel)
    {
        output.Item(new { pid = Environment.ProcessId, args });
        if (args.ValueKind == JsonValueKind.Object && args.TryGetProperty("wait", out JsonElement w) && w.ValueKind == JsonValueKind.True)
        {
            cancel.WaitHandle.WaitOne();
            cancel.ThrowIfCancellationRequested();
        }
    }
}
