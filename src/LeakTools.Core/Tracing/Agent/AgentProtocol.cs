using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace LeakTools.Core.Tracing.Agent;

/// <summary>The agent's wire format, mirrored from src/LeakTools.Agent/protocol.h (change both
/// together): records of an 8-byte header (type, flags, payload length) and a little-endian,
/// packed payload over a Unix stream socket.</summary>
internal static class AgentProtocol
{
    public const int Version = 1;
    public const int TokenLength = 32;
    public const int HeaderSize = 8;

    // agent -> controller
    public const ushort Hello = 1, Ready = 2, Failed = 3, Stack = 4, Counters = 5, Expired = 6, Stats = 7, Exit = 8, Bye = 9, Message = 10,
        Problem = 11, Sync = 12;
    // controller -> agent
    public const ushort Config = 64, Flush = 65, Detach = 66, SyncAck = 67;

    public const uint HelloLaunch = 1;
    public const uint ConfigCheckFrees = 1;
    public const uint ProblemDoubleFree = 1, ProblemInvalidFree = 2;
    public const uint ByeDetached = 1, ByeExit = 2;
    public const uint BlockSampled = 2;

    public const int HelloSize = 4 + 4 + 8 + 4 + 4 + TokenLength;
    public const int ConfigSize = 8 + 8 + 8 + 4 + 4;
    public const int ReadySize = 24;
    public const int CounterSize = 8 + 16 * 8;
    public const int ExpiredSize = 8 + 8 + 8 + 8;
    public const int StatsSize = 12 * 8;
    public const int ProblemSize = 4 + 4 + 8 + 8 + 8 + 4 * 4;
    public const int SyncSize = 8;

    /// <summary>The names of the allocator functions, in the agent's enum order (bits of <see cref="AgentReady.Functions"/>).</summary>
    public static readonly string[] FunctionNames =
    {
        "malloc", "calloc", "realloc", "reallocarray", "free", "cfree", "posix_memalign",
        "aligned_alloc", "memalign", "valloc", "pvalloc", "dlopen", "dlmopen", "dlclose",
    };

    public static byte[] Record(ushort type, ReadOnlySpan<byte> payload)
    {
        byte[] b = new byte[HeaderSize + payload.Length];
        BinaryPrimitives.WriteUInt16LittleEndian(b, type);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), (uint)payload.Length);
        payload.CopyTo(b.AsSpan(HeaderSize));
        return b;
    }

    /// <summary>CONFIG; checked frees are asked for only of an agent that traces from the start
    /// (<paramref name="launched"/>) without sampling.</summary>
    public static byte[] ConfigRecord(AgentConfig c, bool launched)
    {
        Span<byte> p = stackalloc byte[ConfigSize];
        BinaryPrimitives.WriteUInt64LittleEndian(p, (ulong)Math.Max(0, c.ExpireNanoseconds));
        BinaryPrimitives.WriteUInt64LittleEndian(p[8..], (ulong)Math.Max(0, c.SampleInterval));
        BinaryPrimitives.WriteUInt64LittleEndian(p[16..], (ulong)Math.Max(0, c.TickNanoseconds));
        BinaryPrimitives.WriteUInt32LittleEndian(p[24..], (uint)c.Depth);
        BinaryPrimitives.WriteUInt32LittleEndian(p[28..], c.CheckFrees && launched && c.SampleInterval == 0 ? ConfigCheckFrees : 0);
        return Record(Config, p);
    }

    public static byte[] SyncAckRecord(uint sequence)
    {
        Span<byte> p = stackalloc byte[SyncSize];
        BinaryPrimitives.WriteUInt32LittleEndian(p, sequence);
        BinaryPrimitives.WriteUInt32LittleEndian(p[4..], 0);
        return Record(SyncAck, p);
    }

    public static uint ParseSync(ReadOnlySpan<byte> p)
    {
        if (p.Length < 4) throw Malformed("SYNC");
        return BinaryPrimitives.ReadUInt32LittleEndian(p);
    }

    public static AgentProblem ParseProblem(ReadOnlySpan<byte> p)
    {
        if (p.Length < ProblemSize) throw Malformed("PROBLEM");
        uint kind = BinaryPrimitives.ReadUInt32LittleEndian(p);
        if (kind is not (ProblemDoubleFree or ProblemInvalidFree)) throw Malformed("PROBLEM");
        int function = (int)BinaryPrimitives.ReadUInt32LittleEndian(p[44..]);
        return new AgentProblem(
            kind == ProblemDoubleFree ? AllocationProblemKind.DoubleFree : AllocationProblemKind.InvalidFree,
            (int)BinaryPrimitives.ReadUInt32LittleEndian(p[4..]),
            BinaryPrimitives.ReadUInt64LittleEndian(p[8..]),
            (long)BinaryPrimitives.ReadUInt64LittleEndian(p[16..]),
            (long)BinaryPrimitives.ReadUInt64LittleEndian(p[24..]),
            (int)BinaryPrimitives.ReadUInt32LittleEndian(p[32..]),
            (int)BinaryPrimitives.ReadUInt32LittleEndian(p[36..]),
            (int)BinaryPrimitives.ReadUInt32LittleEndian(p[40..]),
            function >= 0 && function < FunctionNames.Length ? FunctionNames[function] : "?");
    }

    public static AgentHello ParseHello(ReadOnlySpan<byte> p)
    {
        if (p.Length < HelloSize) throw Malformed("HELLO");
        return new AgentHello(
            (int)BinaryPrimitives.ReadUInt32LittleEndian(p),
            (int)BinaryPrimitives.ReadUInt32LittleEndian(p[4..]),
            (long)BinaryPrimitives.ReadUInt64LittleEndian(p[8..]),
            (BinaryPrimitives.ReadUInt32LittleEndian(p[16..]) & HelloLaunch) != 0,
            (int)BinaryPrimitives.ReadUInt32LittleEndian(p[20..]),
            System.Text.Encoding.ASCII.GetString(p.Slice(24, TokenLength)).TrimEnd('\0'));
    }

    public static AgentReady ParseReady(ReadOnlySpan<byte> p)
    {
        if (p.Length < ReadySize) throw Malformed("READY");
        return new AgentReady(
            (int)BinaryPrimitives.ReadUInt32LittleEndian(p),
            (int)BinaryPrimitives.ReadUInt32LittleEndian(p[4..]),
            BinaryPrimitives.ReadUInt32LittleEndian(p[12..]),
            BinaryPrimitives.ReadUInt64LittleEndian(p[16..]));
    }

    public static AgentCounters ParseCounter(ReadOnlySpan<byte> p)
    {
        ReadOnlySpan<long> v = MemoryMarshal.Cast<byte, long>(p.Slice(8, 16 * 8));
        return new AgentCounters
        {
            StackId = (int)BinaryPrimitives.ReadUInt32LittleEndian(p),
            AllocationCount = v[0], AllocatedBytes = v[1], FreeCount = v[2], FreedBytes = v[3],
            ExpiredCount = v[4], ExpiredBytes = v[5], FreedAfterExpiryCount = v[6], FreedAfterExpiryBytes = v[7],
            EstimatedAllocationCount = v[8] / 1024.0, EstimatedAllocatedBytes = v[9],
            EstimatedFreeCount = v[10] / 1024.0, EstimatedFreedBytes = v[11],
            EstimatedExpiredCount = v[12] / 1024.0, EstimatedExpiredBytes = v[13],
            EstimatedFreedAfterExpiryCount = v[14] / 1024.0, EstimatedFreedAfterExpiryBytes = v[15],
        };
    }

    public static AgentExpiry ParseExpired(ReadOnlySpan<byte> p) => new(
        (int)BinaryPrimitives.ReadUInt32LittleEndian(p),
        (BinaryPrimitives.ReadUInt32LittleEndian(p[4..]) & BlockSampled) != 0,
        (long)BinaryPrimitives.ReadUInt64LittleEndian(p[8..]),
        (long)BinaryPrimitives.ReadUInt64LittleEndian(p[16..]),
        BinaryPrimitives.ReadUInt64LittleEndian(p[24..]));

    public static AgentStats ParseStats(ReadOnlySpan<byte> p)
    {
        if (p.Length < StatsSize) throw Malformed("STATS");
        ReadOnlySpan<long> v = MemoryMarshal.Cast<byte, long>(p[..StatsSize]);
        return new AgentStats
        {
            Timestamp = v[0], Allocations = v[1], Frees = v[2], UnknownFrees = v[3],
            LiveBlocks = v[5], LiveBytes = v[6], Stacks = (int)v[7], Forks = v[8], StackTableFull = v[9], HookedSlots = (int)v[10],
        };
    }

    public static LeakToolsException Malformed(string what) =>
        new(FailureKind.InvalidData, "AgentProtocolError", $"The agent sent a malformed {what} record.");
}
