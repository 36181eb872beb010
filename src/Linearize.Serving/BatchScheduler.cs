using System.Collections.Concurrent;
using Linearize.Generation;
using Linearize.Inference;
using Linearize.Tokenization;

namespace Linearize.Serving;

/// <summary>
/// Continuous batching on one thread that owns the model: requests join the running decode batch as soon as a slot is
/// free and leave when they finish or their client goes away. A short prompt (up to
/// <see cref="ServerOptions.EnginePrefillMaxTokens"/>) is fed through the batch one token per step; a longer one is
/// prefilled by the TorchSharp model (batched GEMMs) and its state handed to the engine; every step advances all of them with one <see cref="DecodeEngine.Step(DecodeSequence[], int, ReadOnlySpan{int})"/>,
/// which reads each weight once for the batch. The engine is batch-invariant, so a request's tokens are those it would
/// get alone. A linear model's sequence holds a fixed-size state, which is what lets a batch stay full cheaply.
/// </summary>
public sealed class BatchScheduler : IDisposable
{
    private sealed class Active(GenerationRequest request, DecodeSequence sequence, Sampler sampler, StreamingDetokenizer detok, StopSequenceMatcher stop)
    {
        public GenerationRequest Request { get; } = request;
        public DecodeSequence Sequence { get; } = sequence;
        public Sampler Sampler { get; } = sampler;
        public StreamingDetokenizer Detok { get; } = detok;
        public StopSequenceMatcher Stop { get; } = stop;

        /// <summary>The token the next step feeds: a prompt token while prefilling in the batch, then the last sampled one.</summary>
        public int Next;

        /// <summary>Prompt tokens still to feed before sampling starts (empty when TorchSharp prefilled the prompt).</summary>
        public IReadOnlyList<int> Pending = Array.Empty<int>();
        public int PendingIndex;
    }

    private readonly ServedModel _model;
    private readonly ServerOptions _options;
    private readonly ServerMetrics _metrics;
    private readonly EngineGenerator _generator;
    private readonly ConcurrentQueue<GenerationRequest> _waiting = new();
    private readonly SemaphoreSlim _signal = new(0);
    private readonly List<Active> _active = new();
    private readonly Thread _thread;
    private readonly CancellationTokenSource _stop = new();
    private int _waitingCount;
    private int _activeCount;
    private volatile string? _finishAllReason;

    public BatchScheduler(ServedModel model, ServerOptions options, ServerMetrics metrics)
    {
        _model = model;
        _options = options;
        _metrics = metrics;
        _generator = new EngineGenerator(model.Model, model.Engine);
        _thread = new Thread(Loop) { Name = "linearize-scheduler", IsBackground = true };
        _thread.Start();
    }

    /// <summary>Requests waiting for a slot.</summary>
    public int QueueDepth => Volatile.Read(ref _waitingCount);

    /// <summary>Sequences in the running batch.</summary>
    public int ActiveSequences => Volatile.Read(ref _activeCount);

    /// <summary>Largest state one sequence has held so far (bytes): memory per active sequence.</summary>
    public long MaxStateBytesPerSequence { get; private set; }

    /// <summary>Queues <paramref name="request"/>; false when the queue is full (answer 429).</summary>
    public bool TryEnqueue(GenerationRequest request)
    {
        int free = Math.Max(0, _options.MaxBatch - ActiveSequences);
        if (Interlocked.Increment(ref _waitingCount) > _options.MaxQueue + free)
        {
            Interlocked.Decrement(ref _waitingCount);
            return false;
        }

        _waiting.Enqueue(request);
        _metrics.QueueDepth.Set(QueueDepth);
        _signal.Release();
        return true;
    }

    /// <summary>Ends every running and waiting request at the next step with <paramref name="reason"/> as its finish
    /// reason (text produced so far is kept), and every request queued later at once: the end of a server's grace
    /// period, where failing the streams would lose their final chunk.</summary>
    public void FinishAll(string reason)
    {
        _finishAllReason = reason;
        _signal.Release();
    }

    private void Loop()
    {
        var sequences = new DecodeSequence[_options.MaxBatch];
        var tokens = new int[_options.MaxBatch];
        while (!_stop.IsCancellationRequested)
        {
            if (_finishAllReason is string reason)
            {
                foreach (var a in _active)
                    Finish(a, reason);
                _active.Clear();
                while (_waiting.TryDequeue(out var r))
                {
                    Interlocked.Decrement(ref _waitingCount);
                    r.Writer.TryWrite(new GenerationEvent("", reason));
                    r.Writer.TryComplete();
                }
            }

            Admit();
            _active.RemoveAll(a =>
            {
                if (!a.Request.Cancellation.IsCancellationRequested)
                    return false;
                Finish(a, null);
                _metrics.Disconnected.Inc();
                return true;
            });
            Publish();
            if (_active.Count == 0)
            {
                try
                {
                    _signal.Wait(_stop.Token);
                }
                catch (OperationCanceledException)
                {
                    break;
                }

                continue;
            }

            int count = _active.Count;
            for (int b = 0; b < count; b++)
            {
                sequences[b] = _active[b].Sequence;
                tokens[b] = _active[b].Next;
            }

            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            try
            {
                _model.Engine.Step(sequences, count, tokens);
                _metrics.StepSeconds.Inc(System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalSeconds);
                _metrics.Steps.Inc();
            }
            catch (Exception e)
            {
                // A failing step (it should not happen) ends the requests in it, never the server.
                foreach (var a in _active)
                    Fail(a, e);
                _active.Clear();
                continue;
            }

            for (int b = count - 1; b >= 0; b--)
            {
                var a = _active[b];
                if (a.PendingIndex < a.Pending.Count)
                {
                    a.Next = a.Pending[a.PendingIndex++]; // still prefilling in the batch: the logits are not needed
                    continue;
                }

                a.Next = a.Sampler.Sample(_model.Engine.Logits(b));
                if (!Emit(a))
                    _active.RemoveAt(b);
            }

            Array.Clear(sequences);
        }

        foreach (var a in _active)
            Fail(a, new OperationCanceledException("the server is shutting down"));
        while (_waiting.TryDequeue(out var r))
            r.Writer.TryComplete(new OperationCanceledException("the server is shutting down"));
    }

    private void Admit()
    {
        while (_active.Count < _options.MaxBatch && _waiting.TryDequeue(out var request))
        {
            Interlocked.Decrement(ref _waitingCount);
            if (request.Cancellation.IsCancellationRequested)
            {
                request.Writer.TryComplete();
                _metrics.Disconnected.Inc();
                continue;
            }

            Sampler? sampler = null;
            try
            {
                sampler = new Sampler(request.Sampling);
                _metrics.PromptTokens.Inc(request.PromptIds.Count);
                var detok = _model.Tokenizer.CreateStreamingDetokenizer();
                var stop = new StopSequenceMatcher(request.Stop);
                if (request.PromptIds.Count <= _options.EnginePrefillMaxTokens)
                {
                    // A short prompt joins the batch at once and is fed one token per step beside the others' decoding:
                    // its rows cost a fraction of a step, where a TorchSharp prefill would stall every other sequence.
                    _active.Add(new Active(request, _model.Engine.CreateSequence(), sampler, detok, stop)
                    {
                        Pending = request.PromptIds,
                        Next = request.PromptIds[0],
                        PendingIndex = 1,
                    });
                    continue;
                }

                long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                var (sequence, logits) = _generator.Prefill(request.PromptIds);
                _metrics.PrefillSeconds.Inc(System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalSeconds);
                var a = new Active(request, sequence, sampler, detok, stop) { Next = sampler.Sample(logits) };
                if (Emit(a))
                    _active.Add(a);
            }
            catch (Exception e)
            {
                sampler?.Dispose();
                request.Writer.TryComplete(e);
            }
        }
    }

    /// <summary>Handles the token just sampled for <paramref name="a"/>; false when the request is finished.</summary>
    private bool Emit(Active a)
    {
        var r = a.Request;
        int token = a.Next;
        if (_model.StopIds.Contains(token))
        {
            Finish(a, "stop");
            return false;
        }

        r.CompletionTokens++;
        _metrics.GeneratedTokens.Inc();
        string text = a.Stop.Push(a.Detok.Push(token));
        if (text.Length > 0)
            r.Writer.TryWrite(new GenerationEvent(text, null));
        if (a.Stop.Stopped)
        {
            Finish(a, "stop");
            return false;
        }

        // The token just sampled is fed at position Position; a softmax model may not feed one at its context size.
        if (r.CompletionTokens >= r.MaxTokens || (_model.ContextLimit is int limit && a.Sequence.Position >= limit))
        {
            Finish(a, "length");
            return false;
        }

        return true;
    }

    /// <summary>Ends a request: the held-back text, the finish reason (null: cancelled), and its memory.</summary>
    private void Finish(Active a, string? reason)
    {
        MaxStateBytesPerSequence = Math.Max(MaxStateBytesPerSequence, a.Sequence.StateBytes);
        if (reason is not null)
        {
            string tail = a.Stop.Stopped ? "" : a.Stop.Push(a.Detok.Flush()) + a.Stop.Flush();
            if (tail.Length > 0)
                a.Request.Writer.TryWrite(new GenerationEvent(tail, null));
            a.Request.Writer.TryWrite(new GenerationEvent("", reason));
        }

        a.Request.Writer.TryComplete();
        a.Sequence.Dispose();
        a.Sampler.Dispose();
    }

    private void Fail(Active a, Exception e)
    {
        a.Request.Writer.TryComplete(e);
        a.Sequence.Dispose();
        a.Sampler.Dispose();
    }

    private void Publish()
    {
        Volatile.Write(ref _activeCount, _active.Count);
        long bytes = 0;
        foreach (var a in _active)
            bytes += a.Sequence.StateBytes;
        _metrics.ActiveSequences.Set(_active.Count);
        _metrics.QueueDepth.Set(QueueDepth);
        _metrics.StateBytes.Set(bytes);
    }

    public void Dispose()
    {
        _stop.Cancel();
        _thread.Join();
        _stop.Dispose();
        _signal.Dispose();
    }
}
