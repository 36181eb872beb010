namespace Linearize.Checkpoints.Configuration;

/// <summary>Which keys a LoLCATs query attends to with softmax; every older key goes to the linear term (docs/METHODS.md §2.4).</summary>
public enum LolcatsWindowShape
{
    /// <summary>A true sliding window: the last <c>window</c> keys, the query included (<c>lolcats_llama_window_sw</c>).</summary>
    Sw,

    /// <summary>The terrace: blocks of <c>window</c> tokens counted from position 0; a query attends with softmax to its own
    /// block (causally) and the whole previous block (<c>lolcats_llama_window_tk</c>, without the reference code's
    /// end-aligned blocks, docs/METHODS.md §2.4.1).</summary>
    Tk,
}
