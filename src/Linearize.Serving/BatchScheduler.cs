using System.Collections.Concurrent;
using Linearize.Generation;
using Linearize.Inference;
using Linearize.Tokenization;

namespace Linearize.Serving;

/// <summary>
/// Continuous batching on one thread that owns the model: requests join the running batch as soon as a slot is free
/// and leave when they finish or their client goes away. Each iteration prefills up to
/// <see cref="ServerOptions.PrefillSliceTokens"/> prompt tokens of the sequences still reading their prompts (one
/// engine prefill over all of them: chunked prefill, so a long prompt never stalls the others for more than a slice),
/// then advances every sequence that is generating with one
/// <see cref="DecodeEngine.Step(DecodeSequence[], int, ReadOnlySpan{int})"/>, which reads each weight once for the batch.
/// The engine is batch-invariant and its prefill gives the same bits however a prompt is sliced, so a request's tokens
/// are those it would get alone. A linear model's sequence holds a fixed-size state, which is what lets a batch stay
/// full cheaply.
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

        /// <summary>The token the next step feeds: the last sampled one.</summary>
        public int Next;

        /// <summary>Prompt tokens prefilled so far; the sequence generates once all are.</summary>
        public int Prefilled;

        public bool Prefilling => Prefilled < Request.PromptIds.Count;
    }

    private readonly ServedModel _model;
    private readonly ServerOptions _options;
    private readonly ServerMetrics _metrics;
    private readonly ConcurrentQueue<GenerationRequest> _waiting = new();
    private readonly SemaphoreSlim _signal = new(0);
    private readonly List<Active> _active = new();
    private readonly Thread _thread;
    private readonly CancellationTokenSource _stop = new();
    private int _waitingCount;
    private int _activeCount;
    private int _prefillingCount;
    private volatile string? _finishAllReason;

    public BatchScheduler(ServedModel model, ServerOptions options, ServerMetrics metrics)
    {
        _model = model;
        _options = options;
        _metrics = metrics;
        _thread = new Thread(Loop) { Name = "linearize-scheduler", IsBackground = true };
        _thread.Start();
    }

    /// <summary>Requests waiting for a slot.</summary>
    public int QueueDepth => Volatile.Read(ref _waitingCount);

    /// <summary>Sequences in the running batch, those still reading their prompts included.</summary>
    public int ActiveSequences => Volatile.Read(ref _activeCount);

    /// <summary>Sequences of the batch still reading their prompts.</summary>
    public int PrefillingSequences => Volatile.Read(ref _prefillingCount);

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

            PrefillSlice();
            int count = 0;
            foreach (var a in _active)
                if (!a.Prefilling)
                {
                    sequences[count] = a.Sequence;
                    tokens[count++] = a.Next;
                }

            if (count == 0)
                continue;
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
                _active.RemoveAll(a =>
                {
                    if (a.Prefilling)
                        return false;
                    Fail(a, e);
                    return true;
                });
                continue;
            }

            // Rows of the step are the generating sequences in _active order.
            int row = 0;
            var finished = new List<Active>();
            foreach (var a in _active)
            {
                if (a.Prefilling)
                    continue;
                a.Next = a.Sampler.Sample(_model.Engine.Logits(row++));
                if (!Emit(a))
                    finished.Add(a);
            }

            foreach (var a in finished)
                _active.Remove(a);
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
            // The slot is taken before the request stops counting as waiting: otherwise, until the next Publish,
            // TryEnqueue saw the slot as free and let one request too many wait.
            Interlocked.Increment(ref _activeCount);
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
                // The prompt is prefilled by the loop, a slice per iteration, beside the others' decoding.
                _active.Add(new Active(request, _model.Engine.CreateSequence(), sampler, detok, stop));
            }
            catch (Exception e)
            {
                sampler?.Dispose();
                request.Writer.TryComplete(e);
            }
        }
    }

    /// <summary>
    /// Feeds up to <see cref="ServerOptions.PrefillSliceTokens"/> prompt tokens of the prefilling sequences in one engine
    /// prefill, the fewest remaining tokens first (a short prompt arriving behind a long one starts answering at once;
    /// the long one takes what budget is left); a sequence whose prompt is complete samples its first token.
    /// </summary>
    private void PrefillSlice()
    {
        var sequences = new List<DecodeSequence>();
        var slices = new List<int[]>();
        var owners = new List<Active>();
        int budget = _options.PrefillSliceTokens;
        foreach (var a in _active.Where(a => a.Prefilling).OrderBy(a => a.Request.PromptIds.Count - a.Prefilled))
        {
            if (budget == 0)
                break;
            int n = Math.Min(budget, a.Request.PromptIds.Count - a.Prefilled);
            var slice = new int[n];
            for (int i = 0; i < n; i++)
                slice[i] = a.Request.PromptIds[a.Prefilled + i];
            sequences.Add(a.Sequence);
            slices.Add(slice);
            owners.Add(a);
            budget -= n;
        }

        if (owners.Count == 0)
            return;
        long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
        float[][] logits;
        try
        {
            logits = _model.Engine.Prefill(sequences, slices);
        }
        catch (Exception e)
        {
            foreach (var a in owners)
            {
                Fail(a, e);
                _active.Remove(a);
            }

            return;
        }

        _metrics.PrefillSeconds.Inc(System.Diagnostics.Stopwatch.GetElapsedTime(t0).TotalSeconds);
        for (int k = 0; k < owners.Count; k++)
        {
            var a = owners[k];
            a.Prefilled += slices[k].Length;
            if (a.Prefilling)
                continue;
            a.Next = a.Sampler.Sample(logits[k]);
            if (!Emit(a))
                _active.Remove(a);
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
        Volatile.Write(ref _prefillingCount, _active.Count(a => a.Prefilling));
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
