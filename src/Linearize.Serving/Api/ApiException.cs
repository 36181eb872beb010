using System.Net;

namespace Linearize.Serving.Api;

/// <summary>A request the server refuses, answered as OpenAI's error JSON with <see cref="Status"/>.</summary>
public sealed class ApiException(HttpStatusCode status, string message, string? param = null, string type = "invalid_request_error", string? code = null)
    : Exception(message)
{
    public HttpStatusCode Status { get; } = status;

    /// <summary>The request field at fault (OpenAI's <c>param</c>).</summary>
    public string? Param { get; } = param;

    public string Type { get; } = type;

    /// <summary>OpenAI's machine-readable <c>code</c> (e.g. <c>model_not_found</c>), or null.</summary>
    public string? Code { get; } = code;

    public static ApiException BadRequest(string message, string? param = null) => new(HttpStatusCode.BadRequest, message, param);

    /// <summary>Seconds a client should wait before retrying (a 429's <c>Retry-After</c>), or null.</summary>
    public int? RetryAfterSeconds { get; init; }
}
