using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;

namespace LeakTools.Core.Hosting;

/// <summary>The helper host's side of the protocol: JSON lines in (requests, cancels), JSON lines
/// out (streamed replies, one Done per request). Commands run one at a time on the main thread;
/// a reader thread takes cancels. End of input (the cmdlet finished, or pwsh died) and
/// SIGTERM/SIGINT/SIGHUP cancel the running command, which detaches cleanly, and then the host exits.</summary>
public static class HelperServer
{
    /// <summary>Entry point of LeakTools.Host and of the pwsh bootstrap: requests on
    /// <paramref name="inFd"/>, replies on <paramref name="outFd"/>.</summary>
    public static int RunOnDescriptors(int inFd, int outFd)
    {
        // No PR_SET_PDEATHSIG: it fires when the *thread* that spawned us ends (a pipeline thread of
        // pwsh, long before pwsh exits). The end of our input is the signal that pwsh went away:
        // only pwsh holds the pipe's write end (close-on-exec), and the kernel closes it when pwsh dies.
        using var input = new FileStream(new SafeFileHandle(inFd, true), FileAccess.Read, 1);
        using var output = new FileStream(new SafeFileHandle(outFd, true), FileAccess.Write, 1);
        return Run(input, output);
    }

    public static int Run(Stream input, Stream output)
    {
        var writer = new StreamWriter(output, new UTF8Encoding(false)) { AutoFlush = true, NewLine = "\n" };
        var sendLock = new object();
        void Send(HelperReply reply)
        {
            string line = JsonSerializer.Serialize(reply, HelperJson.Options);
            lock (sendLock)
            {
                try { writer.WriteLine(line); }
                catch (IOException) { /* the client is gone; the command is being cancelled */ }
            }
        }

        using var all = new CancellationTokenSource();
        var queue = new BlockingCollection<HelperRequest>();
        void Shutdown()
        {
            all.Cancel();
            try { queue.CompleteAdding(); } catch (ObjectDisposedException) { }
        }
        // SIGTERM/SIGINT/SIGHUP: cancel the running command (it detaches), then exit.
        var signals = new List<PosixSignalRegistration>();
        foreach (PosixSignal s in new[] { PosixSignal.SIGTERM, PosixSignal.SIGINT, PosixSignal.SIGHUP })
        {
            signals.Add(PosixSignalRegistration.Create(s, ctx => { ctx.Cancel = true; Shutdown(); }));
        }

        var running = new ConcurrentDictionary<int, CancellationTokenSource>();
        var readerThread = new Thread(() =>
        {
            try
            {
                using var reader = new StreamReader(input, new UTF8Encoding(false));
                string? line;
                while ((line = reader.ReadLine()) is not null)
                {
                    if (line.Length == 0) continue;
                    HelperRequest? request;
                    try { request = JsonSerializer.Deserialize<HelperRequest>(line, HelperJson.Options); }
                    catch (JsonException ex)
                    {
                        Send(new HelperReply { Kind = HelperReplyKind.Done, Failure = new HelperFailure { Kind = FailureKind.InvalidData, ErrorId = "HelperBadRequest", Message = ex.Message } });
                        continue;
                    }
                    if (request is null) continue;
                    if (request.Cancel)
                    {
                        if (running.TryGetValue(request.Id, out var cts)) cts.Cancel();
                        continue;
                    }
                    try { queue.Add(request); }
                    catch (InvalidOperationException) { break; } // shutting down
                }
            }
            catch (IOException) { }
            finally
            {
                Shutdown();
            }
        }) { IsBackground = true, Name = "LeakTools helper input" };
        readerThread.Start();

        foreach (HelperRequest request in queue.GetConsumingEnumerable())
        {
            var output2 = new HelperOutput(request.Id, Send);
            IHelperCommand? command = request.Command is null ? null : HelperCommands.Find(request.Command);
            if (command is null)
            {
                Send(Done(request.Id, new LeakToolsException(FailureKind.NotSupported, "HelperUnknownCommand", $"The helper host has no command '{request.Command}'.")));
                continue;
            }
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(all.Token);
            running[request.Id] = cts;
            try
            {
                command.Run(request.Args, output2, cts.Token);
                Send(new HelperReply { Id = request.Id, Kind = HelperReplyKind.Done });
            }
            catch (OperationCanceledException)
            {
                Send(Done(request.Id, new LeakToolsException(FailureKind.SystemError, "Cancelled", "The operation was cancelled.")));
            }
            catch (LeakToolsException ex)
            {
                Send(Done(request.Id, ex));
            }
            catch (Exception ex)
            {
                Send(Done(request.Id, new LeakToolsException(FailureKind.SystemError, "HelperFailed", $"The helper host failed: {ex}")));
            }
            finally
            {
                running.TryRemove(request.Id, out _);
            }
        }
        foreach (var s in signals) s.Dispose();
        return 0;
    }

    private static HelperReply Done(int id, LeakToolsException ex) =>
        new() { Id = id, Kind = HelperReplyKind.Done, Failure = HelperFailure.From(ex) };
}
