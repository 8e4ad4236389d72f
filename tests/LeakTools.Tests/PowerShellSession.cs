using System.Collections.ObjectModel;
using Xunit;
using System.Management.Automation;
using System.Management.Automation.Runspaces;
using LeakTools.Tests.Shared;

namespace LeakTools.Tests;

/// <summary>An in-process PowerShell runspace with the staged module (out/LeakTools) imported.</summary>
public sealed class PowerShellSession : IDisposable
{
    private readonly Runspace _runspace;

    public PowerShellSession()
    {
        if (!File.Exists(RepoPaths.ModuleManifest))
            throw new InvalidOperationException($"{RepoPaths.ModuleManifest} is missing: run 'dotnet pwsh ./build.ps1 Build' first.");
        var iss = InitialSessionState.CreateDefault2();
        iss.ImportPSModule(RepoPaths.ModuleManifest);
        _runspace = RunspaceFactory.CreateRunspace(iss);
        _runspace.Open();
    }

    /// <summary>Runs a script; variables are set first. Errors are collected, not thrown.</summary>
    public PowerShellResult Run(string script, IDictionary<string, object?>? variables = null)
    {
        using var ps = PowerShell.Create();
        ps.Runspace = _runspace;
        if (variables is not null)
        {
            foreach (var kv in variables) _runspace.SessionStateProxy.SetVariable(kv.Key, kv.Value);
        }
        ps.AddScript(script);
        Collection<PSObject> output;
        Exception? terminating = null;
        try
        {
            output = ps.Invoke();
        }
        catch (RuntimeException ex)
        {
            output = new Collection<PSObject>();
            terminating = ex;
        }
        return new PowerShellResult(
            output,
            ps.Streams.Error.ToList(),
            ps.Streams.Warning.Select(w => w.Message).ToList(),
            ps.Streams.Verbose.Select(v => v.Message).ToList(),
            terminating);
    }

    public void Dispose() => _runspace.Dispose();

    /// <summary>A PowerShell on a runspace of its own with the module imported, for tests that
    /// stop a running pipeline (Ctrl+C). Dispose both.</summary>
    public static (Runspace Runspace, PowerShell PowerShell) CreateStoppable()
    {
        var iss = InitialSessionState.CreateDefault2();
        iss.ImportPSModule(RepoPaths.ModuleManifest);
        var runspace = RunspaceFactory.CreateRunspace(iss);
        runspace.Open();
        var ps = PowerShell.Create();
        ps.Runspace = runspace;
        return (runspace, ps);
    }
}

public sealed record PowerShellResult(
    Collection<PSObject> Output,
    List<ErrorRecord> Errors,
    List<string> Warnings,
    List<string> Verbose,
    Exception? Terminating)
{
    public T Single<T>() => (T)Assert.Single(Output).BaseObject;

    public IEnumerable<T> All<T>() => Output.Select(o => (T)o.BaseObject);

    public PowerShellResult NoErrors()
    {
        Assert.Null(Terminating);
        Assert.True(Errors.Count == 0, string.Join("\n", Errors.Select(e => e.FullyQualifiedErrorId + ": " + e)));
        return this;
    }
}
