using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;

namespace LeakTools.Core.Tracing;

/// <summary>The one thread that issues every ptrace request of a session: the kernel ties a
/// tracee to the thread that seized it, so requests from any other thread fail with ESRCH.
/// <see cref="Invoke{T}"/> runs work there and returns its result (or rethrows its exception).</summary>
public sealed class PtraceThread : IDisposable
{
    private readonly BlockingCollection<Action> _work = new();
    private readonly Thread _thread;

    public PtraceThread(string name = "LeakTools ptrace")
    {
        _thread = new Thread(Loop) { IsBackground = true, Name = name };
        _thread.Start();
    }

    /// <summary>True on the ptrace thread itself (work already there runs inline).</summary>
    public bool IsCurrent => Thread.CurrentThread == _thread;

    public T Invoke<T>(Func<T> work)
    {
        if (IsCurrent) return work();
        T result = default!;
        ExceptionDispatchInfo? error = null;
        using var done = new ManualResetEventSlim();
        _work.Add(() =>
        {
            try { result = work(); }
            catch (Exception ex) { error = ExceptionDispatchInfo.Capture(ex); }
            finally { done.Set(); }
        });
        done.Wait();
        error?.Throw();
        return result;
    }

    public void Invoke(Action work) => Invoke(() => { work(); return 0; });

    private void Loop()
    {
        foreach (Action a in _work.GetConsumingEnumerable()) a();
    }

    public void Dispose()
    {
        _work.CompleteAdding();
        if (!IsCurrent) _thread.Join();
    }
}
