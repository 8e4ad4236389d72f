using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace LeakTools.Core.Tracing.Agent;

/// <summary>The controller's end of the agent socket: listens in a private folder, accepts the one
/// agent that knows the token and runs in the expected process (SO_PEERCRED), sends the session's
/// configuration and waits until the agent is hooked in.</summary>
internal sealed class AgentListener : IDisposable
{
    private readonly Socket _socket;
    private readonly string _hostDir;

    private AgentListener(Socket socket, string hostDir, string targetSocketPath)
    {
        _socket = socket;
        _hostDir = hostDir;
        TargetSocketPath = targetSocketPath;
        Token = Convert.ToHexString(RandomNumberGenerator.GetBytes(AgentProtocol.TokenLength / 2)).ToLowerInvariant();
    }

    /// <summary>The socket's path as the target names it.</summary>
    public string TargetSocketPath { get; }

    public string Token { get; }

    /// <summary>What the agent is given to find us: "path\ntoken".</summary>
    public string AgentArguments => TargetSocketPath + "\n" + Token;

    public static AgentListener Create(string hostDir, string targetDir)
    {
        string hostPath = Path.Combine(hostDir, "agent.sock");
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(hostPath));
            File.SetUnixFileMode(hostPath, (UnixFileMode)0x1B6); // 0666: a target running as another user may connect
            socket.Listen(4);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        return new AgentListener(socket, hostDir, targetDir + "/agent.sock");
    }

    /// <summary>Accepts the agent of <paramref name="pid"/>, configures it and waits for READY.</summary>
    public AgentConnection Accept(int pid, AgentConfig config, TimeSpan timeout, CancellationToken cancel, Func<bool>? giveUp = null)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            cancel.ThrowIfCancellationRequested();
            if (clock.Elapsed > timeout || giveUp?.Invoke() == true)
            {
                throw new LeakToolsException(FailureKind.SystemError, "AgentNotConnected",
                    $"The agent in process {pid} did not connect within {timeout.TotalSeconds:0} s.", pid);
            }
            if (!_socket.Poll(100_000, SelectMode.SelectRead)) continue;
            Socket client = _socket.Accept();
            try
            {
                if (PeerPid(client) != pid)
                {
                    client.Dispose();
                    continue;
                }
                var connection = new AgentConnection(client, pid);
                if (connection.Handshake(Token, config, timeout - clock.Elapsed, cancel))
                {
                    RemoveFolder(); // connected: the path is no longer needed (nothing stays behind, even after kill -9)
                    return connection;
                }
                connection.Dispose();
            }
            catch (Exception ex) when (ex is SocketException or IOException)
            {
                client.Dispose();
            }
        }
    }

    private static int PeerPid(Socket s)
    {
        Span<byte> cred = stackalloc byte[12];
        int n = s.GetRawSocketOption(1 /* SOL_SOCKET */, 17 /* SO_PEERCRED */, cred);
        return n >= 4 ? BinaryPrimitives.ReadInt32LittleEndian(cred) : -1;
    }

    private void RemoveFolder()
    {
        try { Directory.Delete(_hostDir, recursive: true); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
    }

    public void Dispose()
    {
        _socket.Dispose();
        RemoveFolder();
    }
}

/// <summary>How an agent session ended.</summary>
public enum AgentSessionEnd
{
    /// <summary>We asked the agent to detach and it confirmed: hooks off, slots restored.</summary>
    Detached,
    /// <summary>The program exited and the agent sent its final counters.</summary>
    ProgramExited,
    /// <summary>The connection ended without a goodbye (the process died, or the agent unhooked itself).</summary>
    ConnectionLost,
}

/// <summary>One connected agent: decodes its records into <see cref="IAgentEventSink"/> calls.</summary>
public sealed class AgentConnection : IDisposable
{
    private readonly Socket _socket;
    private readonly object _sendLock = new();
    private byte[] _buffer = new byte[1 << 16];
    private int _start, _end;
    private long _clockOffset;
    private long _expireNs;
    private bool _eof;

    internal AgentConnection(Socket socket, int pid)
    {
        _socket = socket;
        ProcessId = pid;
    }

    public int ProcessId { get; }

    public AgentHello Hello { get; private set; } = null!;

    public AgentReady Ready { get; private set; } = null!;

    internal bool Handshake(string token, AgentConfig config, TimeSpan timeout, CancellationToken cancel)
    {
        var deadline = Stopwatch.StartNew();
        if (!TryRead(timeout, cancel, out ushort type, out ReadOnlySpan<byte> payload) || type != AgentProtocol.Hello) return false;
        AgentHello hello = AgentProtocol.ParseHello(payload);
        if (hello.Token != token || hello.Version != AgentProtocol.Version) return false;
        Hello = hello;
        // Same machine, same CLOCK_MONOTONIC, unless the target lives in a time namespace.
        long offset = MonotonicNow() - hello.MonotonicNanoseconds;
        _clockOffset = Math.Abs(offset) < 1_000_000_000 ? 0 : offset;
        _expireNs = config.ExpireNanoseconds;
        Send(AgentProtocol.ConfigRecord(config, hello.Launched));
        if (!TryRead(timeout - deadline.Elapsed, cancel, out type, out payload)) return false;
        if (type == AgentProtocol.Failed)
        {
            string why = payload.Length > 4 ? System.Text.Encoding.UTF8.GetString(payload[4..]) : "unknown reason";
            throw new LeakToolsException(FailureKind.NotSupported, "AgentFailed", $"The agent in process {ProcessId} could not start: {why}.", ProcessId);
        }
        if (type != AgentProtocol.Ready) return false;
        Ready = AgentProtocol.ParseReady(payload);
        return true;
    }

    /// <summary>CLOCK_MONOTONIC in ns (what Stopwatch reads on Linux).</summary>
    public static long MonotonicNow() =>
        Stopwatch.Frequency == 1_000_000_000 ? Stopwatch.GetTimestamp() : (long)(Stopwatch.GetTimestamp() * (1e9 / Stopwatch.Frequency));

    /// <summary>Asks the agent to unhook and say goodbye (any thread).</summary>
    public void RequestDetach() => TrySend(AgentProtocol.Record(AgentProtocol.Detach, default));

    /// <summary>Asks for an immediate report (any thread).</summary>
    public void RequestFlush() => TrySend(AgentProtocol.Record(AgentProtocol.Flush, default));

    private void TrySend(byte[] record)
    {
        try { Send(record); }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException) { }
    }

    private void Send(byte[] record)
    {
        lock (_sendLock) _socket.Send(record, SocketFlags.None);
    }

    /// <summary>Delivers records to <paramref name="sink"/> until the agent says goodbye or the
    /// connection ends. <paramref name="shouldDetach"/> is asked every 100 ms; once it says yes
    /// (or <paramref name="cancel"/> fires), DETACH is sent and the agent gets
    /// <paramref name="detachGrace"/> to confirm.</summary>
    public AgentSessionEnd Pump(IAgentEventSink sink, Func<bool> shouldDetach, CancellationToken cancel, TimeSpan detachGrace)
    {
        bool detachSent = false, exiting = false;
        var sinceDetach = new Stopwatch();
        while (true)
        {
            if (!detachSent && (cancel.IsCancellationRequested || shouldDetach()))
            {
                RequestDetach();
                detachSent = true;
                sinceDetach.Start();
            }
            if (detachSent && sinceDetach.Elapsed > detachGrace) return AgentSessionEnd.ConnectionLost;
            if (!TryRead(TimeSpan.FromMilliseconds(100), CancellationToken.None, out ushort type, out ReadOnlySpan<byte> p))
            {
                if (_eof) return exiting ? AgentSessionEnd.ProgramExited : AgentSessionEnd.ConnectionLost;
                continue;
            }
            switch (type)
            {
                case AgentProtocol.Stack:
                {
                    if (p.Length < 8) throw AgentProtocol.Malformed("STACK");
                    int id = (int)BinaryPrimitives.ReadUInt32LittleEndian(p);
                    int depth = (int)BinaryPrimitives.ReadUInt32LittleEndian(p[4..]);
                    if (p.Length < 8 + depth * 8) throw AgentProtocol.Malformed("STACK");
                    sink.OnStack(id, MemoryMarshal.Cast<byte, ulong>(p.Slice(8, depth * 8)));
                    break;
                }
                case AgentProtocol.Expired:
                    for (int i = 0; i + AgentProtocol.ExpiredSize <= p.Length; i += AgentProtocol.ExpiredSize)
                    {
                        AgentExpiry e = AgentProtocol.ParseExpired(p.Slice(i, AgentProtocol.ExpiredSize));
                        e = e with { Timestamp = e.Timestamp + _clockOffset };
                        sink.OnExpired(e, e.Timestamp + _expireNs);
                    }
                    break;
                case AgentProtocol.Counters:
                    for (int i = 0; i + AgentProtocol.CounterSize <= p.Length; i += AgentProtocol.CounterSize)
                    {
                        AgentCounters c = AgentProtocol.ParseCounter(p.Slice(i, AgentProtocol.CounterSize));
                        sink.OnCounters(c);
                    }
                    break;
                case AgentProtocol.Stats:
                {
                    AgentStats s = AgentProtocol.ParseStats(p);
                    s.Timestamp += _clockOffset;
                    sink.OnStats(s);
                    break;
                }
                case AgentProtocol.Exit:
                    exiting = true;
                    sink.OnProgramExit();
                    break;
                case AgentProtocol.Problem:
                {
                    AgentProblem problem = AgentProtocol.ParseProblem(p);
                    sink.OnProblem(problem with { Timestamp = problem.Timestamp + _clockOffset });
                    break;
                }
                case AgentProtocol.Sync:
                {
                    // a thread of the program waits for this answer (bounded): answer once the
                    // sink has done what needs the process alive
                    uint sequence = AgentProtocol.ParseSync(p);
                    try { sink.OnHeld(); }
                    finally { TrySend(AgentProtocol.SyncAckRecord(sequence)); }
                    break;
                }
                case AgentProtocol.Bye:
                {
                    uint reason = p.Length >= 4 ? BinaryPrimitives.ReadUInt32LittleEndian(p) : 0;
                    return reason == AgentProtocol.ByeExit ? AgentSessionEnd.ProgramExited : AgentSessionEnd.Detached;
                }
            }
        }
    }

    /// <summary>Reads one record; false on timeout or end of stream (then <see cref="_eof"/>).
    /// The payload stays valid until the next read.</summary>
    private bool TryRead(TimeSpan timeout, CancellationToken cancel, out ushort type, out ReadOnlySpan<byte> payload)
    {
        type = 0;
        payload = default;
        var clock = Stopwatch.StartNew();
        while (true)
        {
            int have = _end - _start;
            if (have >= AgentProtocol.HeaderSize)
            {
                uint length = BinaryPrimitives.ReadUInt32LittleEndian(_buffer.AsSpan(_start + 4));
                if (length > 64 << 20) throw AgentProtocol.Malformed("oversized");
                int total = AgentProtocol.HeaderSize + (int)length;
                if (have >= total)
                {
                    type = BinaryPrimitives.ReadUInt16LittleEndian(_buffer.AsSpan(_start));
                    payload = _buffer.AsSpan(_start + AgentProtocol.HeaderSize, (int)length);
                    _start += total;
                    return true;
                }
                if (total > _buffer.Length) Array.Resize(ref _buffer, Math.Max(total, _buffer.Length * 2));
            }
            if (_start > 0)
            {
                Buffer.BlockCopy(_buffer, _start, _buffer, 0, have);
                _start = 0;
                _end = have;
            }
            if (_eof) return false;
            TimeSpan left = timeout - clock.Elapsed;
            if (left <= TimeSpan.Zero || cancel.IsCancellationRequested) return false;
            if (!_socket.Poll((int)Math.Min(left.TotalMicroseconds, 100_000), SelectMode.SelectRead)) continue;
            int n;
            try { n = _socket.Receive(_buffer, _end, _buffer.Length - _end, SocketFlags.None); }
            catch (SocketException) { n = 0; }
            if (n == 0) _eof = true;
            _end += n;
        }
    }

    public void Dispose() => _socket.Dispose();
}
