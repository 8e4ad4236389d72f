using System.Buffers.Binary;
using System.Globalization;
using LeakTools.Core.Tracing.Agent;
using LeakTools.Tests.Shared;
using Xunit;

namespace LeakTools.Core.Tests.Tracing;

/// <summary>The agent's wire format: AgentProtocol.cs against protocol.h as gcc lays it out.</summary>
public sealed class AgentProtocolTests
{
    private const string Layout = """
        #include <stdio.h>
        #include <stddef.h>
        #include <string.h>
        #include "protocol.h"
        int main(void)
        {
            printf("HelloSize %zu\n", sizeof(struct lt_rec_hello));
            printf("ConfigSize %zu\n", sizeof(struct lt_rec_config));
            printf("ConfigFlags %zu\n", offsetof(struct lt_rec_config, flags));
            printf("ReadySize %zu\n", sizeof(struct lt_rec_ready));
            printf("CounterSize %zu\n", sizeof(struct lt_rec_counter));
            printf("ExpiredSize %zu\n", sizeof(struct lt_rec_expired));
            printf("StatsSize %zu\n", sizeof(struct lt_rec_stats));
            printf("ProblemSize %zu\n", sizeof(struct lt_rec_problem));
            printf("SyncSize %zu\n", sizeof(struct lt_rec_sync));
            printf("Problem %d\nSync %d\nSyncAck %d\nConfigCheckFrees %u\n", LT_REC_PROBLEM, LT_REC_SYNC, LT_REC_SYNC_ACK, LT_CONFIG_CHECK_FREES);
            printf("ProblemDoubleFree %d\nProblemInvalidFree %d\n", LT_PROBLEM_DOUBLE_FREE, LT_PROBLEM_INVALID_FREE);
            struct lt_rec_problem p = { LT_PROBLEM_DOUBLE_FREE, 77, 0x1122334455667788ull, 48, 123456789, 5, 6, 7, 2 };
            unsigned char b[sizeof p];
            memcpy(b, &p, sizeof p);
            printf("ProblemBytes ");
            for (size_t i = 0; i < sizeof p; i++) printf("%02x", b[i]);
            printf("\n");
            return 0;
        }
        """;

    private static Dictionary<string, string> CompileAndRun()
    {
        string dir = Directory.CreateTempSubdirectory("leaktools-protocol-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "layout.c"), Layout);
            string exe = Path.Combine(dir, "layout");
            Tools.Run("gcc", "-std=gnu11", "-I", Path.Combine(RepoPaths.Root, "src", "LeakTools.Agent"), "-o", exe, Path.Combine(dir, "layout.c"));
            return Tools.Run(exe).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(' ', 2)).ToDictionary(p => p[0], p => p[1]);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [LinuxFact("gcc")]
    public void The_managed_mirror_matches_protocol_h_and_reads_a_problem_as_the_agent_writes_it()
    {
        Dictionary<string, string> c = CompileAndRun();
        int Int(string name) => int.Parse(c[name], CultureInfo.InvariantCulture);
        Assert.Equal(AgentProtocol.HelloSize, Int("HelloSize"));
        Assert.Equal(AgentProtocol.ConfigSize, Int("ConfigSize"));
        Assert.Equal(28, Int("ConfigFlags"));
        Assert.Equal(AgentProtocol.ReadySize, Int("ReadySize"));
        Assert.Equal(AgentProtocol.CounterSize, Int("CounterSize"));
        Assert.Equal(AgentProtocol.ExpiredSize, Int("ExpiredSize"));
        Assert.Equal(AgentProtocol.StatsSize, Int("StatsSize"));
        Assert.Equal(AgentProtocol.ProblemSize, Int("ProblemSize"));
        Assert.Equal(AgentProtocol.SyncSize, Int("SyncSize"));
        Assert.Equal((int)AgentProtocol.Problem, Int("Problem"));
        Assert.Equal((int)AgentProtocol.Sync, Int("Sync"));
        Assert.Equal((int)AgentProtocol.SyncAck, Int("SyncAck"));
        Assert.Equal((int)AgentProtocol.ConfigCheckFrees, Int("ConfigCheckFrees"));
        Assert.Equal((int)AgentProtocol.ProblemDoubleFree, Int("ProblemDoubleFree"));
        Assert.Equal((int)AgentProtocol.ProblemInvalidFree, Int("ProblemInvalidFree"));

        AgentProblem p = AgentProtocol.ParseProblem(Convert.FromHexString(c["ProblemBytes"]));
        Assert.Equal(new AgentProblem(AllocationProblemKind.DoubleFree, 77, 0x1122334455667788UL, 48, 123456789, 5, 6, 7, "realloc"), p);
    }

    [Fact]
    public void Checked_frees_are_asked_only_of_an_agent_tracing_from_the_start_without_sampling()
    {
        static uint Flags(AgentConfig c, bool launched) =>
            BinaryPrimitives.ReadUInt32LittleEndian(AgentProtocol.ConfigRecord(c, launched).AsSpan(AgentProtocol.HeaderSize + 28));
        Assert.Equal(AgentProtocol.ConfigCheckFrees, Flags(new AgentConfig(), launched: true));
        Assert.Equal(0u, Flags(new AgentConfig(), launched: false));                              // attach mode
        Assert.Equal(0u, Flags(new AgentConfig { SampleInterval = 512 * 1024 }, launched: true)); // sampling
        Assert.Equal(0u, Flags(new AgentConfig { CheckFrees = false }, launched: true));          // turned off
        Assert.Throws<LeakToolsException>(() => AgentProtocol.ParseProblem(new byte[AgentProtocol.ProblemSize - 1]));
        Assert.Throws<LeakToolsException>(() => AgentProtocol.ParseProblem(new byte[AgentProtocol.ProblemSize])); // kind 0
    }
}
