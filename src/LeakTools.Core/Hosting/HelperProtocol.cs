using System.Text.Json;
using System.Text.Json.Serialization;

namespace LeakTools.Core.Hosting;

/// <summary>One request to the helper host: run <see cref="Command"/> with <see cref="Args"/>, or
/// (with <see cref="Cancel"/>) cancel the request with this <see cref="Id"/>.</summary>
public sealed class HelperRequest
{
    public int Id { get; set; }
    public string? Command { get; set; }
    public JsonElement Args { get; set; }
    public bool Cancel { get; set; }
}

/// <summary>What a reply carries.</summary>
public enum HelperReplyKind
{
    /// <summary>A result object (streamed: a command may send many).</summary>
    Item,
    Verbose,
    Warning,
    /// <summary>A non-terminating error about one target; the command goes on.</summary>
    Error,
    /// <summary>The command ended; <see cref="HelperReply.Failure"/> says why if it failed.</summary>
    Done,
}

/// <summary>One reply line from the helper host.</summary>
public sealed class HelperReply
{
    public int Id { get; set; }
    public HelperReplyKind Kind { get; set; }
    public JsonElement? Data { get; set; }
    public string? Message { get; set; }
    public HelperFailure? Failure { get; set; }
}

/// <summary>A <see cref="LeakToolsException"/> carried across the pipe.</summary>
public sealed class HelperFailure
{
    public FailureKind Kind { get; set; }
    public string ErrorId { get; set; } = "";
    public string Message { get; set; } = "";
    public string? Target { get; set; }

    public static HelperFailure From(LeakToolsException ex) =>
        new() { Kind = ex.Kind, ErrorId = ex.ErrorId, Message = ex.Message, Target = ex.Target?.ToString() };

    public LeakToolsException ToException() =>
        new(Kind, ErrorId, Message, int.TryParse(Target, out int pid) ? pid : Target);
}

public static class HelperJson
{
    public static JsonSerializerOptions Options { get; } = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter() },
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };
}
