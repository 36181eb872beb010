namespace Linearize.Serving.LoadTest;

/// <summary>Outcome of firing malformed requests: how many got the 4xx they deserved, and what else came back.</summary>
public sealed record MalformedSweep(int Sent, int AnsweredWith4xx, int Other, bool ServesAfterwards);
