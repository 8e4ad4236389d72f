using System.Runtime.InteropServices;

namespace LeakTools.Tests.Shared;

/// <summary>Signals for fixtures (stop them so their memory holds still while two tools read it).</summary>
public static partial class Signals
{
    public const int SIGKILL = 9;
    public const int SIGTERM = 15;
    public const int SIGCONT = 18;
    public const int SIGSTOP = 19;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int KillNative(int pid, int signal);

    public static void Send(int pid, int signal)
    {
        if (KillNative(pid, signal) != 0) throw new InvalidOperationException($"kill({pid}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    /// <summary>Stops the processes until disposed (then SIGCONT), waiting until each shows state T.</summary>
    public static IDisposable Stopped(params int[] pids)
    {
        foreach (int pid in pids) Send(pid, SIGSTOP);
        foreach (int pid in pids)
        {
            for (int i = 0; i < 200; i++)
            {
                string stat = File.ReadAllText($"/proc/{pid}/stat");
                char state = stat[stat.LastIndexOf(')') + 2];
                if (state is 'T' or 't') break;
                Thread.Sleep(5);
            }
        }
        return new Resume(pids);
    }

    private sealed class Resume(int[] pids) : IDisposable
    {
        public void Dispose()
        {
            foreach (int pid in pids)
            {
                try { Send(pid, SIGCONT); } catch (InvalidOperationException) { }
            }
        }
    }
}
