using System.Diagnostics;
using System.Globalization;
using System.Management.Automation;
using LeakTools.Core;
using LeakTools.Core.ProcFs;

namespace LeakTools.Commands;

/// <summary>Resolves -Name / -Id / -InputObject to processes once, for every cmdlet that works on
/// processes, as PowerShell's ProcessBaseCommand does. Names match Get-Process style (wildcards,
/// case-insensitive) against the display name, the kernel's comm (cut at 15 characters) and the
/// base name of argv[0], so <c>amsHelper</c> finds <c>/sbin/amsHelper -f</c>.
/// -Name is deliberately not bound by property name from the pipeline: our objects carry both Name
/// and Id, and binding Name would turn one piped process into every process of that name.</summary>
public abstract class ProcessTargetCommandBase : PSCmdlet
{
    protected const string NameSet = "Name";
    protected const string IdSet = "Id";
    protected const string InputObjectSet = "InputObject";

    private int _deniedCount;
    private readonly HashSet<int> _reported = new();

    /// <summary>Process names (wildcards allowed).</summary>
    [Parameter(Position = 0, ParameterSetName = NameSet)]
    [Alias("ProcessName")]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[]? Name { get; set; }

    /// <summary>Process ids.</summary>
    [Parameter(Mandatory = true, ParameterSetName = IdSet, ValueFromPipelineByPropertyName = true)]
    [Alias("PID", "ProcessId")]
    public int[] Id { get; set; } = Array.Empty<int>();

    /// <summary>Process objects, as Get-Process emits them.</summary>
    [Parameter(Mandatory = true, ParameterSetName = InputObjectSet, ValueFromPipeline = true)]
    public Process[] InputObject { get; set; } = Array.Empty<Process>();

    /// <summary>The /proc reader every subclass uses.</summary>
    protected ProcessReader Reader { get; private set; } = new();

    /// <summary>Set by cmdlets that resolve names again and again (Watch-ProcessMemory) to reuse
    /// the identities of pids already seen; null: every resolution reads every process.</summary>
    protected ProcessIdentityCache? IdentityCache { get; set; }

    /// <summary>True when no target was named: every readable process is wanted, so processes
    /// the caller may not read are skipped with one warning instead of an error each.</summary>
    protected bool AllProcesses => ParameterSetName == NameSet && Name is null;

    protected override void BeginProcessing() => Reader = new ProcessReader();

    protected override void ProcessRecord()
    {
        foreach (ProcessIdentity identity in ResolveTargets()) Guarded(identity, ProcessTarget);
    }

    /// <summary>Runs <paramref name="work"/> for one process with the handling every cmdlet shares:
    /// a process that exited meanwhile is skipped (-Verbose); one the caller may not read is counted
    /// for one warning when every process was asked for, else an error; with
    /// <paramref name="oncePerProcess"/> (cmdlets that read a process again and again) each process
    /// is reported once. False if the work failed.</summary>
    protected bool Guarded(ProcessIdentity identity, Action<ProcessIdentity> work, bool oncePerProcess = false)
    {
        try
        {
            work(identity);
            return true;
        }
        catch (ProcessExitedException)
        {
            WriteVerbose($"Process {identity.Id} ({identity.Name}) exited while it was being read; skipped.");
        }
        catch (ProcessAccessDeniedException ex) when (AllProcesses)
        {
            if (!oncePerProcess || _reported.Add(identity.Id))
            {
                _deniedCount++;
                WriteVerbose(ex.Message);
            }
        }
        catch (LeakToolsException ex)
        {
            if (!oncePerProcess || _reported.Add(identity.Id)) WriteError(ErrorRecords.From(ex, identity.Id));
        }
        return false;
    }

    /// <summary>Reads a process's memory through <see cref="Guarded"/>; null if it could not.</summary>
    protected ProcessMemory? ReadMemoryGuarded(ProcessIdentity identity, bool oncePerProcess = false)
    {
        ProcessMemory? memory = null;
        Guarded(identity, i => memory = Reader.ReadMemory(i), oncePerProcess);
        return memory;
    }

    protected override void EndProcessing() => WarnSkippedProcesses();

    /// <summary>The one warning for processes skipped because they could not be read.</summary>
    protected void WarnSkippedProcesses()
    {
        if (_deniedCount > 0)
        {
            WriteWarning($"{_deniedCount} process(es) could not be read and were skipped: reading another user's " +
                         "process memory needs root with CAP_SYS_PTRACE. Use -Verbose to list them.");
        }
    }

    /// <summary>Does the cmdlet's work for one resolved process.</summary>
    protected abstract void ProcessTarget(ProcessIdentity identity);

    /// <summary>The process ids this record names explicitly (-Id, -InputObject, or numbers in
    /// the first position), or null when it names processes by name. Cmdlets that act on one
    /// process (capture, trace) treat these as errors when unusable instead of skipping them.</summary>
    protected int[]? RequestedIds() => ParameterSetName switch
    {
        IdSet => Id,
        InputObjectSet => InputObject.Select(p => p.Id).ToArray(),
        NameSet when Name is { Length: > 0 } && Name.All(n => int.TryParse(n, NumberStyles.None, CultureInfo.InvariantCulture, out _)) =>
            Name.Select(n => int.Parse(n, CultureInfo.InvariantCulture)).ToArray(),
        _ => null,
    };

    /// <summary>Processes named by this record's parameters; errors for those that do not exist.</summary>
    protected IEnumerable<ProcessIdentity> ResolveTargets() => ResolveTargets(reportNotFound: true);

    /// <summary>As <see cref="ResolveTargets()"/>; with <paramref name="reportNotFound"/> false a
    /// name or id that matches nothing is no error (cmdlets that re-resolve on every tick to follow
    /// restarts, and monitors that record "not running").</summary>
    protected IEnumerable<ProcessIdentity> ResolveTargets(bool reportNotFound)
    {
        switch (ParameterSetName)
        {
            case IdSet:
                foreach (int pid in Id)
                {
                    ProcessIdentity? identity = ReadById(pid, reportNotFound);
                    if (identity is not null) yield return identity;
                }
                break;
            case InputObjectSet:
                foreach (Process process in InputObject)
                {
                    ProcessIdentity? identity = ReadById(process.Id, reportNotFound);
                    if (identity is not null) yield return identity;
                }
                break;
            default:
                foreach (ProcessIdentity identity in ResolveByName(reportNotFound)) yield return identity;
                break;
        }
    }

    /// <summary>Reads one process's identity; null (with an error, or silently) when it does not exist, has
    /// exited, or has no user memory.</summary>
    protected ProcessIdentity? ReadById(int pid, bool reportNotFound = true)
    {
        try
        {
            ProcessIdentity identity = Reader.ReadIdentity(pid);
            return Usable(identity) ? identity : null;
        }
        catch (ProcessNotFoundException ex)
        {
            if (reportNotFound) WriteError(ErrorRecords.From(ex, pid));
        }
        catch (ProcessExitedException)
        {
            WriteVerbose($"Process {pid} exited while it was being read; skipped.");
        }
        catch (LeakToolsException ex)
        {
            WriteError(ErrorRecords.From(ex, pid));
        }
        return null;
    }

    /// <summary>Kernel threads and zombies have no user memory: skipped, said with -Verbose.</summary>
    private bool Usable(ProcessIdentity identity)
    {
        if (identity.Status.IsKernelThread)
        {
            WriteVerbose($"Process {identity.Id} ({identity.Name}) is a kernel thread and has no user memory; skipped.");
            return false;
        }
        if (identity.Status.IsZombie)
        {
            WriteVerbose($"Process {identity.Id} ({identity.Name}) is a zombie (exited, not yet reaped); skipped.");
            return false;
        }
        return true;
    }

    private IEnumerable<ProcessIdentity> ResolveByName(bool reportNotFound = true)
    {
        var patterns = (Name ?? Array.Empty<string>())
            .Select(n => (Text: n, Pattern: new WildcardPattern(n, WildcardOptions.IgnoreCase | WildcardOptions.CultureInvariant), Matched: false))
            .ToArray();
        var found = new List<ProcessIdentity>();
        List<int> listed = Reader.Root.ListProcessIds();
        IdentityCache?.Retain(listed);
        foreach (int pid in listed)
        {
            ProcessIdentity identity;
            try
            {
                identity = IdentityCache?.Read(pid) ?? Reader.ReadIdentity(pid);
            }
            catch (ProcessAccessDeniedException ex) when (AllProcesses)
            {
                _deniedCount++; // /proc mounted with hidepid=1: the directory shows, its files do not
                WriteVerbose(ex.Message);
                continue;
            }
            catch (LeakToolsException)
            {
                continue; // gone since the directory listing, or hidden: not a match
            }
            if (patterns.Length > 0)
            {
                bool any = false;
                for (int i = 0; i < patterns.Length; i++)
                {
                    foreach (string candidate in identity.MatchNames)
                    {
                        if (patterns[i].Pattern.IsMatch(candidate))
                        {
                            patterns[i].Matched = true;
                            any = true;
                            break;
                        }
                    }
                }
                if (!any) continue;
            }
            if (Usable(identity)) found.Add(identity);
        }

        foreach (var p in patterns)
        {
            if (!reportNotFound || p.Matched || WildcardPattern.ContainsWildcardCharacters(p.Text)) continue;
            string message = $"Cannot find a process with the name \"{p.Text}\". Verify the process name and call the cmdlet again.";
            if (int.TryParse(p.Text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int asPid))
                message += $" To select a process by its id, use -Id {asPid}.";
            WriteError(new ErrorRecord(
                new LeakToolsException(FailureKind.NotFound, "ProcessNotFound", message, p.Text),
                "ProcessNotFound", ErrorCategory.ObjectNotFound, p.Text));
        }

        return patterns.Length == 0
            ? found
            : found.OrderBy(i => i.Name, StringComparer.OrdinalIgnoreCase).ThenBy(i => i.Id);
    }
}
